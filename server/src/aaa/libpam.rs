//! Linux-PAM, opened at run time.
//!
//! `libpam.so.0` is loaded with `dlopen` the first time a PAM check runs (once per process), so
//! building needs neither libpam's headers nor libclang, and a machine without libpam runs the
//! server with its other backends: a `pam` or `system` check then gets [`unavailable`]'s plain
//! message.
//!
//! The ABI is declared here by hand from Linux-PAM's `<security/_pam_types.h>` (Debian's
//! libpam0g-dev): the opaque `pam_handle_t`, `struct pam_message`, `struct pam_response`,
//! `struct pam_conv`, and the constants this crate uses. Only what [`super::pam`] needs is
//! bound: `pam_start`, `pam_authenticate`, `pam_acct_mgmt`, `pam_get_item` (`PAM_USER`),
//! `pam_strerror` and `pam_end`.
//!
//! The conversation function hands PAM its answers in memory from libc's `calloc`/`strndup`,
//! which PAM releases with `free()`; when the conversation fails, the answers already made are
//! wiped and freed here.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::marker::{PhantomData, PhantomPinned};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

use zeroize::Zeroize;

// Return codes (`_pam_types.h`).
pub const PAM_SUCCESS: c_int = 0;
pub const PAM_BUF_ERR: c_int = 5;
pub const PAM_PERM_DENIED: c_int = 6;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_CRED_INSUFFICIENT: c_int = 8;
pub const PAM_AUTHINFO_UNAVAIL: c_int = 9;
pub const PAM_USER_UNKNOWN: c_int = 10;
pub const PAM_MAXTRIES: c_int = 11;
pub const PAM_NEW_AUTHTOK_REQD: c_int = 12;
pub const PAM_ACCT_EXPIRED: c_int = 13;
pub const PAM_CONV_ERR: c_int = 19;
pub const PAM_AUTHTOK_EXPIRED: c_int = 27;

// Flags (`_pam_types.h`: `0x8000U`, `0x0001U`; the functions take them as `int`).
pub const PAM_SILENT: c_int = 0x8000;
pub const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x0001;

// Item types.
const PAM_USER: c_int = 2;

// Message styles.
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;

/// The most messages one conversation call may carry (`PAM_MAX_NUM_MSG`).
const PAM_MAX_NUM_MSG: usize = 32;

/// The library's file name (its SONAME).
pub const LIBPAM: &str = "libpam.so.0";

/// `pam_handle_t`: opaque, only ever behind a pointer PAM gave us.
#[repr(C)]
struct PamHandle {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// `struct pam_message`.
#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

/// `struct pam_response`.
#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

/// The conversation function of `struct pam_conv`.
type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

type PamStartFn = unsafe extern "C" fn(
    service_name: *const c_char,
    user: *const c_char,
    pam_conversation: *const PamConv,
    pamh: *mut *mut PamHandle,
) -> c_int;
type PamEndFn = unsafe extern "C" fn(pamh: *mut PamHandle, pam_status: c_int) -> c_int;
/// `pam_authenticate` and `pam_acct_mgmt`.
type PamFlagsFn = unsafe extern "C" fn(pamh: *mut PamHandle, flags: c_int) -> c_int;
type PamGetItemFn = unsafe extern "C" fn(
    pamh: *const PamHandle,
    item_type: c_int,
    item: *mut *const c_void,
) -> c_int;
type PamStrerrorFn = unsafe extern "C" fn(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;

/// The loaded library and the functions taken from it.
struct LibPam {
    start: PamStartFn,
    end: PamEndFn,
    authenticate: PamFlagsFn,
    acct_mgmt: PamFlagsFn,
    get_item: PamGetItemFn,
    strerror: PamStrerrorFn,
    /// Keeps the functions above mapped; never dropped (it lives in a static).
    _lib: libloading::Library,
}

impl std::fmt::Debug for LibPam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LibPam")
    }
}

/// The plain message for a machine where `name` cannot be loaded.
fn unavailable_message(name: &str) -> String {
    format!(
        "PAM is not available on this machine: {name} could not be loaded (Debian: apt install libpam0g)"
    )
}

/// Opens `name` and takes the functions; the error is [`unavailable_message`].
fn load(name: &str) -> Result<LibPam, String> {
    let unavailable = |e: libloading::Error| {
        tracing::debug!(library = name, "dlopen: {e}");
        unavailable_message(name)
    };
    // SAFETY: loading libpam runs its ELF initialisers, which only set up libpam's own state
    // (Linux-PAM has no constructors with outside effects); nothing else in the process is
    // touched.
    let lib = unsafe { libloading::Library::new(name) }.map_err(unavailable)?;
    // SAFETY: each symbol is declared with the C signature of Linux-PAM's `<security/
    // pam_appl.h>` / `_pam_types.h` (checked against Debian's libpam0g-dev headers); the
    // function pointers are copied out and stay valid while `lib` is loaded, which is as long
    // as the `LibPam` that holds both (a static, never dropped).
    unsafe {
        Ok(LibPam {
            start: *lib.get::<PamStartFn>(b"pam_start\0").map_err(unavailable)?,
            end: *lib.get::<PamEndFn>(b"pam_end\0").map_err(unavailable)?,
            authenticate: *lib
                .get::<PamFlagsFn>(b"pam_authenticate\0")
                .map_err(unavailable)?,
            acct_mgmt: *lib
                .get::<PamFlagsFn>(b"pam_acct_mgmt\0")
                .map_err(unavailable)?,
            get_item: *lib
                .get::<PamGetItemFn>(b"pam_get_item\0")
                .map_err(unavailable)?,
            strerror: *lib
                .get::<PamStrerrorFn>(b"pam_strerror\0")
                .map_err(unavailable)?,
            _lib: lib,
        })
    }
}

/// The library, loaded on first use.
fn lib() -> Result<&'static LibPam, &'static str> {
    static LIB: OnceLock<Result<LibPam, String>> = OnceLock::new();
    LIB.get_or_init(|| load(LIBPAM))
        .as_ref()
        .map_err(String::as_str)
}

/// Whether libpam can be used here: `Err` carries the plain message to show an admin.
pub fn available() -> Result<(), &'static str> {
    lib().map(|_| ())
}

/// A PAM result other than `PAM_SUCCESS`, with PAM's own text for it (empty when there is no
/// handle to ask: `pam_start` failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamError {
    /// The PAM return code.
    pub code: c_int,
    /// `pam_strerror`'s text.
    pub text: String,
}

impl std::fmt::Display for PamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.text.is_empty() {
            write!(f, "<{}>", self.code)
        } else {
            f.write_str(&self.text)
        }
    }
}

/// Why a transaction could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// libpam could not be loaded: the plain message.
    Unavailable(&'static str),
    /// `pam_start` refused (or the names could not be passed).
    Pam(PamError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Unavailable(m) => f.write_str(m),
            StartError::Pam(e) => e.fmt(f),
        }
    }
}

/// Answers PAM's messages.
pub trait Conversation {
    /// The answer to a prompt, without a NUL byte (`echo`: the prompt may show what is typed,
    /// as for a user name; not: a password). `None` fails the conversation.
    fn answer(&mut self, echo: bool, prompt: &CStr) -> Option<&[u8]>;
    /// A message to show the user (`error`: `PAM_ERROR_MSG`, else `PAM_TEXT_INFO`).
    fn message(&mut self, error: bool, text: &CStr);
}

/// One PAM transaction (`pam_start` .. `pam_end`).
pub struct Transaction<C: Conversation> {
    lib: &'static LibPam,
    handle: NonNull<PamHandle>,
    /// What the last PAM call returned: `pam_end` is told.
    last_status: c_int,
    /// The `struct pam_conv` given to `pam_start` (Linux-PAM copies it; kept alive anyway).
    conv: *mut PamConv,
    /// The conversation, owned here (from `Box::into_raw`), reached by PAM through
    /// `appdata_ptr`; freed after `pam_end`.
    handler: *mut C,
}

impl<C: Conversation> std::fmt::Debug for Transaction<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("handle", &self.handle)
            .field("last_status", &self.last_status)
            .finish_non_exhaustive()
    }
}

impl<C: Conversation> Transaction<C> {
    /// `pam_start(service, user, conv)`.
    pub fn start(service: &str, user: &str, handler: C) -> Result<Self, StartError> {
        let lib = lib().map_err(StartError::Unavailable)?;
        let buf_err = || {
            StartError::Pam(PamError {
                code: PAM_BUF_ERR,
                text: String::new(),
            })
        };
        let c_service = CString::new(service).map_err(|_| buf_err())?;
        let c_user = CString::new(user).map_err(|_| buf_err())?;
        let handler = Box::into_raw(Box::new(handler));
        let conv = Box::into_raw(Box::new(PamConv {
            conv: Some(converse::<C>),
            appdata_ptr: handler.cast(),
        }));
        let mut handle: *mut PamHandle = ptr::null_mut();
        // SAFETY: the strings are NUL-terminated and outlive the call; `conv` points to a live
        // `pam_conv` whose function has the C signature and whose `appdata_ptr` is the `C` that
        // `converse::<C>` expects; both stay alive until after `pam_end` (see `Drop`);
        // `handle` is a valid place for PAM to write the handle to.
        let rc = unsafe { (lib.start)(c_service.as_ptr(), c_user.as_ptr(), conv, &mut handle) };
        match NonNull::new(handle) {
            Some(handle) if rc == PAM_SUCCESS => Ok(Transaction {
                lib,
                handle,
                last_status: PAM_SUCCESS,
                conv,
                handler,
            }),
            _ => {
                // On failure Linux-PAM frees what it made and sets the handle to NULL itself
                // (`_pam_drop`): there is nothing to `pam_end`.
                // SAFETY: both came from `Box::into_raw` above and PAM holds no transaction
                // that could still use them.
                unsafe {
                    drop(Box::from_raw(conv));
                    drop(Box::from_raw(handler));
                }
                Err(StartError::Pam(PamError {
                    code: if rc == PAM_SUCCESS { PAM_BUF_ERR } else { rc },
                    text: String::new(),
                }))
            }
        }
    }

    /// The result of a call, remembered for `pam_end`, with PAM's text on failure.
    fn status(&mut self, rc: c_int) -> Result<(), PamError> {
        self.last_status = rc;
        if rc == PAM_SUCCESS {
            return Ok(());
        }
        // SAFETY: the handle is live; `pam_strerror` returns a pointer to a static string (or
        // NULL), which is copied at once.
        let text = unsafe {
            let p = (self.lib.strerror)(self.handle.as_ptr(), rc);
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Err(PamError { code: rc, text })
    }

    /// `pam_authenticate(flags)`; the conversation may be called.
    pub fn authenticate(&mut self, flags: c_int) -> Result<(), PamError> {
        // SAFETY: the handle is live and used by this thread only; the conversation it calls
        // is alive (owned by `self`).
        let rc = unsafe { (self.lib.authenticate)(self.handle.as_ptr(), flags) };
        self.status(rc)
    }

    /// `pam_acct_mgmt(flags)`; the conversation may be called.
    pub fn acct_mgmt(&mut self, flags: c_int) -> Result<(), PamError> {
        // SAFETY: as in `authenticate`.
        let rc = unsafe { (self.lib.acct_mgmt)(self.handle.as_ptr(), flags) };
        self.status(rc)
    }

    /// The `PAM_USER` item (modules may change the user name), if set.
    pub fn user(&self) -> Option<String> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: the handle is live; PAM writes a pointer to its own NUL-terminated copy of
        // the user name (or NULL) into `item`, valid until the item changes or `pam_end`; it
        // is copied at once.
        unsafe {
            if (self.lib.get_item)(self.handle.as_ptr(), PAM_USER, &mut item) != PAM_SUCCESS
                || item.is_null()
            {
                return None;
            }
            Some(CStr::from_ptr(item.cast()).to_string_lossy().into_owned())
        }
    }
}

impl<C: Conversation> Drop for Transaction<C> {
    fn drop(&mut self) {
        // SAFETY: the handle came from `pam_start` and is ended exactly once, here; after
        // `pam_end` PAM no longer calls the conversation, so `conv` and `handler` (both from
        // `Box::into_raw` in `start`) are freed exactly once.
        unsafe {
            (self.lib.end)(self.handle.as_ptr(), self.last_status);
            drop(Box::from_raw(self.conv));
            drop(Box::from_raw(self.handler));
        }
    }
}

/// Wipes and frees the first `made` answers of `replies` and the array.
///
/// # Safety
/// `replies` comes from `calloc` with at least `made` entries, each `resp` NULL or from
/// `strndup`, none handed to PAM.
unsafe fn free_replies(replies: *mut PamResponse, made: usize) {
    for i in 0..made {
        // SAFETY: `i < made`, within the array (the caller's promise).
        let r = unsafe { &mut *replies.add(i) };
        if !r.resp.is_null() {
            // SAFETY: `resp` is a NUL-terminated string from `strndup`, ours to wipe and free.
            unsafe {
                let len = libc::strlen(r.resp);
                std::slice::from_raw_parts_mut(r.resp.cast::<u8>(), len).zeroize();
                libc::free(r.resp.cast());
            }
            r.resp = ptr::null_mut();
        }
    }
    // SAFETY: the array came from `calloc` (the caller's promise).
    unsafe { libc::free(replies.cast()) };
}

/// The conversation function given to PAM: asks the [`Conversation`] behind `appdata_ptr`
/// for each message and hands back the answers in `calloc`/`strndup` memory that PAM frees.
///
/// # Safety
/// Called by PAM with `appdata_ptr` the `C` given to `pam_start` (or NULL) and `msg` an array
/// of `num_msg` pointers to messages (Linux-PAM's layout).
unsafe extern "C" fn converse<C: Conversation>(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    if msg.is_null() || resp.is_null() || appdata_ptr.is_null() {
        return PAM_CONV_ERR;
    }
    let n = match usize::try_from(num_msg) {
        Ok(n) if (1..=PAM_MAX_NUM_MSG).contains(&n) => n,
        _ => return PAM_CONV_ERR,
    };
    // SAFETY: `appdata_ptr` is the `C` that `Transaction::start` boxed for this transaction;
    // PAM calls the conversation from the thread that runs the PAM call, while no other
    // reference to it exists.
    let handler = unsafe { &mut *appdata_ptr.cast::<C>() };
    // SAFETY: plain allocation; checked for NULL below. Zeroed: every `resp` starts NULL.
    let replies =
        unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: `msg` has `num_msg` entries (PAM's promise) and `i < n == num_msg`.
        let m = unsafe { *msg.add(i) };
        let failed = if m.is_null() {
            Some(PAM_CONV_ERR)
        } else {
            // SAFETY: a non-NULL message pointer from PAM points to a `pam_message` that stays
            // valid during this call; its text is NUL-terminated (or NULL) for these styles.
            let (style, text) = unsafe {
                let m = &*m;
                let text = if m.msg.is_null() {
                    c""
                } else {
                    CStr::from_ptr(m.msg)
                };
                (m.msg_style, text)
            };
            match style {
                PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => {
                    match handler.answer(style == PAM_PROMPT_ECHO_ON, text) {
                        Some(answer) if !answer.contains(&0) => {
                            // SAFETY: `answer` is `answer.len()` readable bytes without NUL;
                            // `strndup` copies them into `malloc` memory with a NUL.
                            let copy =
                                unsafe { libc::strndup(answer.as_ptr().cast(), answer.len()) };
                            if copy.is_null() {
                                Some(PAM_BUF_ERR)
                            } else {
                                // SAFETY: `i < n`, within the array.
                                unsafe { (*replies.add(i)).resp = copy };
                                None
                            }
                        }
                        _ => Some(PAM_CONV_ERR),
                    }
                }
                PAM_ERROR_MSG | PAM_TEXT_INFO => {
                    handler.message(style == PAM_ERROR_MSG, text);
                    None
                }
                // PAM_RADIO_TYPE, PAM_BINARY_PROMPT, anything else: a VPN login cannot answer.
                _ => Some(PAM_CONV_ERR),
            }
        };
        if let Some(rc) = failed {
            // SAFETY: `replies` is our `calloc` array of `n > i` entries, answers from
            // `strndup`, not handed to PAM.
            unsafe { free_replies(replies, i) };
            return rc;
        }
    }
    // SAFETY: `resp` is PAM's valid place for the array, which PAM now owns and frees.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Scripted {
        user: Vec<u8>,
        password: Vec<u8>,
        shown: Vec<(bool, String)>,
    }

    impl Conversation for Scripted {
        fn answer(&mut self, echo: bool, _prompt: &CStr) -> Option<&[u8]> {
            Some(if echo { &self.user } else { &self.password })
        }
        fn message(&mut self, error: bool, text: &CStr) {
            self.shown
                .push((error, text.to_string_lossy().into_owned()));
        }
    }

    /// Runs `converse` on `(style, text)` messages as PAM would; the answers (freed here with
    /// `free`, as PAM does) or the error code.
    fn run(c: &mut Scripted, msgs: &[(c_int, &CStr)]) -> Result<Vec<Option<Vec<u8>>>, c_int> {
        let owned: Vec<PamMessage> = msgs
            .iter()
            .map(|(s, t)| PamMessage {
                msg_style: *s,
                msg: t.as_ptr(),
            })
            .collect();
        let mut ptrs: Vec<*const PamMessage> = owned.iter().map(|m| m as *const _).collect();
        let mut out: *mut PamResponse = ptr::null_mut();
        let n = c_int::try_from(ptrs.len()).unwrap();
        let rc = unsafe {
            converse::<Scripted>(n, ptrs.as_mut_ptr(), &mut out, (c as *mut Scripted).cast())
        };
        if rc != PAM_SUCCESS {
            assert!(out.is_null(), "no answers handed over on failure");
            return Err(rc);
        }
        assert!(!out.is_null());
        let mut answers = Vec::new();
        for i in 0..msgs.len() {
            let r = unsafe { &*out.add(i) };
            assert_eq!(r.resp_retcode, 0);
            if r.resp.is_null() {
                answers.push(None);
            } else {
                answers.push(Some(unsafe { CStr::from_ptr(r.resp) }.to_bytes().to_vec()));
                unsafe { libc::free(r.resp.cast()) };
            }
        }
        unsafe { libc::free(out.cast()) };
        Ok(answers)
    }

    #[test]
    fn the_conversation_answers_each_prompt_in_malloc_memory() {
        let mut c = Scripted {
            user: b"alice".to_vec(),
            password: b"s3cret".to_vec(),
            ..Default::default()
        };
        let got = run(
            &mut c,
            &[
                (PAM_TEXT_INFO, c"hello"),
                (PAM_PROMPT_ECHO_ON, c"login: "),
                (PAM_PROMPT_ECHO_OFF, c"Password: "),
                (PAM_ERROR_MSG, c"careful"),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            [
                None,
                Some(b"alice".to_vec()),
                Some(b"s3cret".to_vec()),
                None
            ]
        );
        assert_eq!(
            c.shown,
            [(false, "hello".to_string()), (true, "careful".to_string())]
        );
    }

    #[test]
    fn the_conversation_refuses_what_it_cannot_answer() {
        let mut c = Scripted {
            user: b"u".to_vec(),
            password: b"p".to_vec(),
            ..Default::default()
        };
        // A radio prompt after a password (the password's copy is wiped and freed).
        assert_eq!(
            run(&mut c, &[(PAM_PROMPT_ECHO_OFF, c"pw"), (5, c"yes?")]),
            Err(PAM_CONV_ERR)
        );
        assert_eq!(run(&mut c, &[]), Err(PAM_CONV_ERR));
        let many = vec![(PAM_TEXT_INFO, c"x"); PAM_MAX_NUM_MSG + 1];
        assert_eq!(run(&mut c, &many), Err(PAM_CONV_ERR));
        let mut nul = Scripted {
            password: b"a\0b".to_vec(),
            ..Default::default()
        };
        assert_eq!(
            run(&mut nul, &[(PAM_PROMPT_ECHO_OFF, c"pw")]),
            Err(PAM_CONV_ERR)
        );
        let null =
            unsafe { converse::<Scripted>(1, ptr::null_mut(), ptr::null_mut(), ptr::null_mut()) };
        assert_eq!(null, PAM_CONV_ERR);
    }

    #[test]
    fn a_missing_library_gives_the_plain_message() {
        let e = load("libpam-roadgate-test-missing.so.0").unwrap_err();
        assert_eq!(
            e,
            "PAM is not available on this machine: libpam-roadgate-test-missing.so.0 could not be \
             loaded (Debian: apt install libpam0g)"
        );
        assert_eq!(
            unavailable_message(LIBPAM),
            "PAM is not available on this machine: libpam.so.0 could not be loaded (Debian: apt \
             install libpam0g)"
        );
    }

    #[test]
    fn pam_errors_show_pams_text_or_the_code() {
        let e = PamError {
            code: PAM_AUTH_ERR,
            text: "Authentication failure".into(),
        };
        assert_eq!(e.to_string(), "Authentication failure");
        let e = PamError {
            code: 4,
            text: String::new(),
        };
        assert_eq!(e.to_string(), "<4>");
    }
}
