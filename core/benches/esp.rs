//! ESP throughput on one core, next to what the raw cipher and MAC get.
//!
//! `cargo bench -p roadgate-core --bench esp` (harness = false: this program prints figures, it is
//! not a pass/fail test). For each suite it encrypts 1400-byte payloads in place, and
//! encrypts-then-decrypts them back in place, in one reused buffer; decryption alone is the
//! round trip's time less encryption's. It counts heap allocations inside the timed loops
//! (there should be none). Allocations are those of the Rust heap; aws-lc's own C allocations
//! are not seen (its AES-CBC, GCM seal/open and HMAC paths, read in its source, make none: an
//! HMAC context copy is a memcpy).
//!
//! Two references, both on the 1408 bytes of ciphertext a 1400-byte payload becomes:
//! - `openssl speed -evp` / `-hmac` (the system OpenSSL): for CBC + HMAC the combined rate
//!   1/(1/cipher + 1/mac) (encryption with `-evp`, decryption with `-evp -decrypt`); for GCM the
//!   streaming `-evp` rate (the per-record `-aead` rate is printed beside it);
//! - the same primitives called directly through aws-lc-rs (the library ESP runs on), which
//!   isolates ESP's own overhead: headers, padding, IV generation, replay window, checks.
//!
//! The machine may be shared: every figure is the best of `ESP_BENCH_ROUNDS` (default 3)
//! interleaved runs of `ESP_BENCH_SECONDS` (default 1) each, and the load average is printed.
//! The ratios compare packets per second. `ESP_BENCH_CPU_TIME=1` measures per second of CPU
//! time instead of wall time (and runs `openssl speed` without `-elapsed`), which is steadier
//! when other processes compete for the cores.
#![allow(unsafe_code)] // the counting global allocator and clock_gettime below
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::{aead, cipher, hmac};
use roadgate_core::esp::{Encryption, InboundSa, Integrity, OutboundSa, Suite};

/// Counts allocations so the bench can show the packet path makes none.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to the system allocator with the caller's own arguments, so
// the GlobalAlloc contract is exactly System's; the counter is a relaxed atomic add.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator (i.e. System) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (i.e. System) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PAYLOAD: usize = 1400;
/// 1400 + padding + 2 trailer bytes, for both CBC (16) and GCM (4) alignment.
const CIPHER_BYTES: usize = 1408;

#[derive(Clone, Copy)]
enum Kind {
    CbcHmac {
        openssl_cipher: &'static str,
        openssl_mac: &'static str,
    },
    Gcm {
        openssl_cipher: &'static str,
    },
}

struct Case {
    name: &'static str,
    suite: Suite,
    kind: Kind,
}

/// Encrypt and round-trip rates in packets per second; decrypt is derived.
#[derive(Clone, Copy, Default)]
struct Rates {
    encrypt: f64,
    round_trip: f64,
}

impl Rates {
    fn decrypt(&self) -> f64 {
        1.0 / (1.0 / self.round_trip - 1.0 / self.encrypt)
    }
    fn best(self, other: Rates) -> Rates {
        Rates {
            encrypt: self.encrypt.max(other.encrypt),
            round_trip: self.round_trip.max(other.round_trip),
        }
    }
}

/// Whether rates are per second of wall-clock time (default, like `openssl speed -elapsed`) or
/// of this thread's CPU time (`ESP_BENCH_CPU_TIME=1`, and `openssl speed` without `-elapsed`):
/// on a loaded machine the latter leaves out the time other processes had the core.
fn cpu_time_mode() -> bool {
    CPU_TIME.load(Ordering::Relaxed)
}

/// Set once in `main` from the environment (reading it in the loops would allocate).
static CPU_TIME: AtomicBool = AtomicBool::new(false);

/// This thread's CPU time.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is always available
    // on Linux, and on failure `ts` stays zero, which only spoils the figure.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `step` in batches until `duration` has passed; returns operations per second.
fn rate(duration: Duration, mut step: impl FnMut()) -> f64 {
    const BATCH: u64 = 256;
    let cpu = cpu_time_mode();
    let wall_start = Instant::now();
    let cpu_start = thread_cpu_time();
    let mut n = 0u64;
    loop {
        for _ in 0..BATCH {
            step();
        }
        n += BATCH;
        let elapsed = if cpu {
            thread_cpu_time() - cpu_start
        } else {
            wall_start.elapsed()
        };
        if elapsed >= duration {
            return n as f64 / elapsed.as_secs_f64();
        }
    }
}

fn keymat(suite: Suite) -> Vec<u8> {
    (0..suite.keymat_len()).map(|i| i as u8 ^ 0xa5).collect()
}

/// ESP rates; adds the allocations made inside the timed loops to `allocations`.
fn measure_esp(suite: Suite, duration: Duration, allocations: &mut u64) -> Rates {
    let keymat = keymat(suite);
    let head = suite.header_len();
    let mut buf = vec![0x5au8; head + PAYLOAD + suite.max_trailer_len()];
    let payload = head..head + PAYLOAD;

    // SAs are built outside the timed loops; only the loops' allocations are counted.
    let out = OutboundSa::new(2, suite, &keymat).unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let encrypt = rate(duration, || {
        let r = out
            .encrypt(black_box(&mut buf), payload.clone(), 17)
            .unwrap();
        black_box(r);
    });
    *allocations += ALLOCATIONS.load(Ordering::Relaxed) - before;

    let out = OutboundSa::new(3, suite, &keymat).unwrap();
    let inb = InboundSa::new(3, suite, &keymat).unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let round_trip = rate(duration, || {
        let r = out
            .encrypt(black_box(&mut buf), payload.clone(), 17)
            .unwrap();
        let d = inb.decrypt(black_box(&mut buf[r.clone()])).unwrap();
        debug_assert_eq!(r.start + d.payload.start, head);
        black_box(d);
    });
    *allocations += ALLOCATIONS.load(Ordering::Relaxed) - before;
    Rates {
        encrypt,
        round_trip,
    }
}

/// The same cipher and MAC work as one ESP packet, straight through aws-lc-rs.
fn measure_raw(suite: Suite, duration: Duration) -> Rates {
    let keymat = keymat(suite);
    let enc_len = suite.encryption.keymat_len();
    let mut buf = vec![0x5au8; 8 + 16 + CIPHER_BYTES + 32];
    match suite.encryption {
        Encryption::AesCbc { key_len } => {
            let alg = if key_len == 16 {
                &cipher::AES_128
            } else {
                &cipher::AES_256
            };
            let key = &keymat[..enc_len];
            let enc = cipher::EncryptingKey::cbc(cipher::UnboundCipherKey::new(alg, key).unwrap())
                .unwrap();
            let dec = cipher::DecryptingKey::cbc(cipher::UnboundCipherKey::new(alg, key).unwrap())
                .unwrap();
            let mac_alg = match suite.integrity {
                Integrity::HmacSha1_96 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                _ => hmac::HMAC_SHA256,
            };
            let mac = hmac::Key::new(mac_alg, &keymat[enc_len..]);
            let iv = [7u8; 16];
            let seal = |buf: &mut [u8]| {
                let ctx = cipher::EncryptionContext::Iv128(iv.into());
                enc.less_safe_encrypt(&mut buf[24..24 + CIPHER_BYTES], ctx)
                    .unwrap();
                let tag = hmac::sign(&mac, &buf[..24 + CIPHER_BYTES]);
                buf[24 + CIPHER_BYTES..24 + CIPHER_BYTES + 12].copy_from_slice(&tag.as_ref()[..12]);
            };
            let open = |buf: &mut [u8]| {
                let tag = hmac::sign(&mac, &buf[..24 + CIPHER_BYTES]);
                black_box(tag);
                let ctx = cipher::DecryptionContext::Iv128(iv.into());
                dec.decrypt(&mut buf[24..24 + CIPHER_BYTES], ctx).unwrap();
            };
            let encrypt = rate(duration, || seal(black_box(&mut buf)));
            let round_trip = rate(duration, || {
                seal(black_box(&mut buf));
                open(black_box(&mut buf));
            });
            Rates {
                encrypt,
                round_trip,
            }
        }
        Encryption::AesGcm16 { key_len } => {
            let alg = if key_len == 16 {
                &aead::AES_128_GCM
            } else {
                &aead::AES_256_GCM
            };
            let key =
                aead::LessSafeKey::new(aead::UnboundKey::new(alg, &keymat[..enc_len - 4]).unwrap());
            let mut counter = 0u64;
            let mut nonce = || {
                counter += 1;
                let mut n = [0u8; 12];
                n[4..].copy_from_slice(&counter.to_be_bytes());
                n
            };
            let aad = [1u8; 8];
            let encrypt = rate(duration, || {
                let n = aead::Nonce::assume_unique_for_key(nonce());
                let body = &mut black_box(&mut buf)[16..16 + CIPHER_BYTES];
                let tag = key
                    .seal_in_place_separate_tag(n, aead::Aad::from(aad), body)
                    .unwrap();
                let _ = black_box(tag);
            });
            let round_trip = rate(duration, || {
                let n = nonce();
                let buf = black_box(&mut buf);
                let body = &mut buf[16..16 + CIPHER_BYTES];
                let nonce = aead::Nonce::assume_unique_for_key(n);
                let tag = key
                    .seal_in_place_separate_tag(nonce, aead::Aad::from(aad), body)
                    .unwrap();
                buf[16 + CIPHER_BYTES..16 + CIPHER_BYTES + 16].copy_from_slice(tag.as_ref());
                let nonce = aead::Nonce::assume_unique_for_key(n);
                let body = &mut buf[16..16 + CIPHER_BYTES + 16];
                key.open_in_place(nonce, aead::Aad::from(aad), body)
                    .unwrap();
            });
            Rates {
                encrypt,
                round_trip,
            }
        }
        _ => Rates::default(),
    }
}

/// Bytes per second from `openssl speed -mr` at CIPHER_BYTES, or None if it could not run.
fn openssl_rate(seconds: u64, args: &[&str]) -> Option<f64> {
    let seconds = seconds.to_string();
    let bytes = CIPHER_BYTES.to_string();
    let output = Command::new("openssl")
        .args([
            "speed", "-mr", "-elapsed", "-seconds", &seconds, "-bytes", &bytes,
        ])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter(|l| l.starts_with("+F:"))
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<f64>().ok())
        .next_back()
}

/// Best-of-rounds openssl figures for one case, in bytes per second.
#[derive(Clone, Copy, Default)]
struct OpensslFigures {
    enc: f64,
    dec: f64,
    mac: f64,
    aead_enc: f64,
    aead_dec: f64,
}

impl OpensslFigures {
    fn measure(kind: Kind, seconds: u64) -> Option<OpensslFigures> {
        Some(match kind {
            Kind::CbcHmac {
                openssl_cipher: c,
                openssl_mac: m,
            } => OpensslFigures {
                enc: openssl_rate(seconds, &["-evp", c])?,
                dec: openssl_rate(seconds, &["-evp", c, "-decrypt"])?,
                mac: openssl_rate(seconds, &["-hmac", m])?,
                ..OpensslFigures::default()
            },
            Kind::Gcm { openssl_cipher: c } => OpensslFigures {
                enc: openssl_rate(seconds, &["-evp", c])?,
                dec: openssl_rate(seconds, &["-evp", c, "-decrypt"])?,
                aead_enc: openssl_rate(seconds, &["-evp", c, "-aead"]).unwrap_or(f64::NAN),
                aead_dec: openssl_rate(seconds, &["-evp", c, "-aead", "-decrypt"])
                    .unwrap_or(f64::NAN),
                ..OpensslFigures::default()
            },
        })
    }

    fn best(self, o: OpensslFigures) -> OpensslFigures {
        OpensslFigures {
            enc: self.enc.max(o.enc),
            dec: self.dec.max(o.dec),
            mac: self.mac.max(o.mac),
            aead_enc: self.aead_enc.max(o.aead_enc),
            aead_dec: self.aead_dec.max(o.aead_dec),
        }
    }

    /// Packets per second the raw cipher (+ MAC) would allow.
    fn rates(&self, kind: Kind) -> Rates {
        let combined = |a: f64, b: f64| 1.0 / (1.0 / a + 1.0 / b);
        let (enc, dec) = match kind {
            Kind::CbcHmac { .. } => (combined(self.enc, self.mac), combined(self.dec, self.mac)),
            Kind::Gcm { .. } => (self.enc, self.dec),
        };
        let (enc, dec) = (enc / CIPHER_BYTES as f64, dec / CIPHER_BYTES as f64);
        Rates {
            encrypt: enc,
            round_trip: combined(enc, dec),
        }
    }

    fn describe(&self, kind: Kind) -> String {
        let mb = |x: f64| x / 1e6;
        match kind {
            Kind::CbcHmac {
                openssl_cipher: c,
                openssl_mac: m,
            } => format!(
                "{c} enc {:.0} MB/s, dec {:.0} MB/s; hmac({m}) {:.0} MB/s",
                mb(self.enc),
                mb(self.dec),
                mb(self.mac)
            ),
            Kind::Gcm { openssl_cipher: c } => format!(
                "{c} streaming enc {:.0} MB/s, dec {:.0} MB/s (per-record -aead: enc {:.0}, \
                 dec {:.0} MB/s)",
                mb(self.enc),
                mb(self.dec),
                mb(self.aead_enc),
                mb(self.aead_dec)
            ),
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    CPU_TIME.store(
        std::env::var("ESP_BENCH_CPU_TIME").is_ok_and(|v| v == "1"),
        Ordering::Relaxed,
    );
    // `cargo bench` passes `--bench`; anything else (e.g. `cargo test --all-targets`) gets a
    // quick smoke run that only checks the loops work and allocate nothing.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let seconds = env_u64("ESP_BENCH_SECONDS", 1).max(1);
    let rounds = if smoke {
        1
    } else {
        env_u64("ESP_BENCH_ROUNDS", 3).max(1)
    };
    let duration = if smoke {
        Duration::from_millis(20)
    } else {
        Duration::from_secs(seconds)
    };
    let have_openssl = !smoke
        && Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
    if smoke {
        println!("smoke run (no --bench argument): figures below are not measurements");
    }

    println!(
        "ESP bench: {PAYLOAD}-byte payloads, one core, best of {rounds} x {seconds} s per figure, \
         rates per second of {}",
        if cpu_time_mode() {
            "CPU time (openssl speed without -elapsed)"
        } else {
            "wall time"
        }
    );
    println!("load average at start: {}", load_average());
    if !have_openssl {
        println!("openssl not on PATH: skipping the openssl reference");
    }

    let cbc = |key_len, integrity| Suite {
        encryption: Encryption::AesCbc { key_len },
        integrity,
    };
    let gcm = |key_len| Suite {
        encryption: Encryption::AesGcm16 { key_len },
        integrity: Integrity::None,
    };
    let sha1 = Integrity::HmacSha1_96;
    let cases = [
        Case {
            name: "AES-128-CBC + HMAC-SHA1-96",
            suite: cbc(16, sha1),
            kind: Kind::CbcHmac {
                openssl_cipher: "aes-128-cbc",
                openssl_mac: "sha1",
            },
        },
        Case {
            name: "AES-256-CBC + HMAC-SHA1-96",
            suite: cbc(32, sha1),
            kind: Kind::CbcHmac {
                openssl_cipher: "aes-256-cbc",
                openssl_mac: "sha1",
            },
        },
        Case {
            name: "AES-128-CBC + HMAC-SHA-256-128",
            suite: cbc(16, Integrity::HmacSha256_128),
            kind: Kind::CbcHmac {
                openssl_cipher: "aes-128-cbc",
                openssl_mac: "sha256",
            },
        },
        Case {
            name: "AES-128-GCM-16",
            suite: gcm(16),
            kind: Kind::Gcm {
                openssl_cipher: "aes-128-gcm",
            },
        },
        Case {
            name: "AES-256-GCM-16",
            suite: gcm(32),
            kind: Kind::Gcm {
                openssl_cipher: "aes-256-gcm",
            },
        },
    ];

    let mut total_allocations = 0;
    for case in &cases {
        let mut allocations = 0;
        let mut esp = Rates::default();
        let mut raw = Rates::default();
        let mut ossl: Option<OpensslFigures> = None;
        for _ in 0..rounds {
            esp = esp.best(measure_esp(case.suite, duration, &mut allocations));
            raw = raw.best(measure_raw(case.suite, duration));
            if have_openssl && let Some(f) = OpensslFigures::measure(case.kind, seconds) {
                ossl = Some(ossl.map_or(f, |o| o.best(f)));
            }
        }
        total_allocations += allocations;

        let mbs = |pps: f64| pps * PAYLOAD as f64 / 1e6;
        println!();
        println!("{}   (load {})", case.name, load_average());
        for (what, pps) in [
            ("encrypt", esp.encrypt),
            ("decrypt", esp.decrypt()),
            ("enc+dec", esp.round_trip),
        ] {
            println!(
                "  ESP {what}   {:>6.0} MB/s of payload  {:>8.0} pkt/s",
                mbs(pps),
                pps
            );
        }
        println!("  heap allocations in the timed loops: {allocations}");
        let compare = |label: &str, reference: Rates| {
            for (what, e, r) in [
                ("encrypt", esp.encrypt, reference.encrypt),
                ("decrypt", esp.decrypt(), reference.decrypt()),
                ("enc+dec", esp.round_trip, reference.round_trip),
            ] {
                println!(
                    "    {what}: ESP {e:>8.0} pkt/s vs {label} {r:>8.0} pkt/s = {:>5.1} %",
                    100.0 * e / r
                );
            }
        };
        println!("  vs the same primitives through aws-lc-rs directly:");
        compare("raw", raw);
        match ossl {
            Some(o) => {
                println!("  vs openssl speed ({}):", o.describe(case.kind));
                compare("openssl", o.rates(case.kind));
            }
            None if have_openssl => println!("  openssl speed failed for this algorithm"),
            None => {}
        }
    }
    println!();
    println!("heap allocations in all timed loops: {total_allocations}");
    if smoke {
        assert_eq!(total_allocations, 0, "the packet path allocated");
    }
}
