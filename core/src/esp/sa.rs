//! Security associations: one direction each, with the sequence counter (outbound) or the
//! anti-replay window (inbound), and the packet transforms of RFC 4303 §3.3 and §3.4.

use core::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use zeroize::Zeroize;

use super::transform::{Auth, CipherState, Direction, Encryption, MAX_IV_LEN, Suite};
use super::{Decrypted, EspError};

/// Sequence number from which [`OutboundSa::needs_rekey`] says yes: 2^32 - 2^24, leaving 16.7
/// million packets for the IKE layer to finish a quick mode before the counter runs out.
pub const SEQ_SOFT_LIMIT: u32 = u32::MAX - (1 << 24) + 1;

/// Number of 64-bit words in the replay bitmap (a power of two, RFC 6479 §2).
const REPLAY_BLOCKS: usize = 32;
const REPLAY_BLOCK_BITS: u64 = 64;
/// Width of the anti-replay window in packets: the 2048-bit ring less the one block that
/// RFC 6479 keeps for sliding by whole words. RFC 4303 §3.4.3 asks for at least 32 (64 by
/// default); this is 1984.
pub const REPLAY_WINDOW: u64 = (REPLAY_BLOCKS as u64 - 1) * REPLAY_BLOCK_BITS;

/// RFC 4303 Appendix A2 / RFC 6479 sliding window: a ring of bitmap words indexed by sequence
/// number; moving the top of the window clears whole words, so the cost per packet is constant
/// and nothing is allocated.
#[derive(Clone)]
pub(crate) struct ReplayWindow {
    /// Highest sequence number accepted so far (0: none yet).
    top: u64,
    bitmap: [u64; REPLAY_BLOCKS],
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    pub(crate) fn new() -> Self {
        ReplayWindow {
            top: 0,
            bitmap: [0; REPLAY_BLOCKS],
        }
    }

    fn position(seq: u64) -> (usize, u64) {
        // The mask keeps the index inside the array whatever `seq` is.
        let block = ((seq / REPLAY_BLOCK_BITS) as usize) & (REPLAY_BLOCKS - 1);
        (block, 1u64 << (seq % REPLAY_BLOCK_BITS))
    }

    /// Would `seq` be accepted? Does not change the window (RFC 4303 §3.4.3: the window moves
    /// only once the ICV has been verified).
    pub(crate) fn check(&self, seq: u32) -> Result<(), EspError> {
        let seq = u64::from(seq);
        if seq == 0 {
            // Sequence numbers start at 1 (RFC 4303 §3.3.3); 0 is never sent.
            return Err(EspError::Replay);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= REPLAY_WINDOW {
            return Err(EspError::Replay);
        }
        let (block, bit) = Self::position(seq);
        if self.bitmap[block] & bit != 0 {
            Err(EspError::Replay)
        } else {
            Ok(())
        }
    }

    /// Marks `seq` as received, sliding the window forward if it is the new highest.
    pub(crate) fn update(&mut self, seq: u32) {
        let seq = u64::from(seq);
        if seq > self.top {
            let current = self.top / REPLAY_BLOCK_BITS;
            let new = seq / REPLAY_BLOCK_BITS;
            let steps = (new - current).min(REPLAY_BLOCKS as u64);
            for i in 1..=steps {
                let block = ((current + i) as usize) & (REPLAY_BLOCKS - 1);
                self.bitmap[block] = 0;
            }
            self.top = seq;
        }
        let (block, bit) = Self::position(seq);
        self.bitmap[block] |= bit;
    }

    /// Highest sequence number accepted so far.
    pub(crate) fn top(&self) -> u32 {
        u32::try_from(self.top).unwrap_or(u32::MAX)
    }
}

/// The lock's contents even if a thread panicked while holding it (the data it guards stays
/// consistent: every update is a single assignment).
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An outbound (sending) ESP SA. It is `Sync`: data-plane workers share it, each taking its
/// sequence number (and GCM IV) with one atomic add, so no number is ever used twice.
///
/// Keys live in the cipher and HMAC objects, which wipe themselves when the SA is dropped; the
/// SA keeps no other copy of the KEYMAT.
pub struct OutboundSa {
    spi: u32,
    suite: Suite,
    cipher: CipherState,
    auth: Auth,
    /// Last sequence number taken (0: none yet). Wider than the 32-bit field so that taking
    /// one past 2^32 - 1 is seen, never wrapped.
    seq: AtomicU64,
    /// Next GCM explicit IV (RFC 4106 §3.1: a counter, unique per key).
    gcm_next_iv: AtomicU64,
    /// Per-SA CSPRNG for CBC IVs, seeded once from the OS: no syscall per packet.
    iv_rng: Option<Mutex<ChaCha20Rng>>,
    packets: AtomicU64,
    bytes: AtomicU64,
    #[cfg(test)]
    forced_iv: Option<[u8; MAX_IV_LEN]>,
}

impl core::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("suite", &self.suite)
            .field("seq", &self.last_seq())
            .field("packets", &self.packets())
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

impl OutboundSa {
    /// Builds an SA from its SPI (the peer's choice), suite and KEYMAT, which is the encryption
    /// key (+ GCM salt) followed by the integrity key, exactly `suite.keymat_len()` bytes.
    pub fn new(spi: u32, suite: Suite, keymat: &[u8]) -> Result<Self, EspError> {
        suite.check()?;
        if keymat.len() != suite.keymat_len() {
            return Err(EspError::BadKey);
        }
        let (enc_key, auth_key) = keymat
            .split_at_checked(suite.encryption.keymat_len())
            .ok_or(EspError::BadKey)?;
        let cipher = CipherState::new(suite.encryption, enc_key, Direction::Out)?;
        let auth = Auth::new(suite.integrity, auth_key)?;
        let iv_rng = match suite.encryption {
            Encryption::AesCbc { .. } | Encryption::TripleDesCbc => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|_| EspError::Rng)?;
                let rng = ChaCha20Rng::from_seed(seed);
                seed.zeroize();
                Some(Mutex::new(rng))
            }
            Encryption::AesGcm16 { .. } | Encryption::Null => None,
        };
        Ok(OutboundSa {
            spi,
            suite,
            cipher,
            auth,
            seq: AtomicU64::new(0),
            gcm_next_iv: AtomicU64::new(1),
            iv_rng,
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            #[cfg(test)]
            forced_iv: None,
        })
    }

    /// The SPI written into every packet.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The SA's suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Packets sent.
    pub fn packets(&self) -> u64 {
        self.packets.load(Relaxed)
    }

    /// Payload bytes sent (the plaintext handed to `encrypt`, without ESP overhead), for
    /// lifetime-in-kilobytes checks.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    /// Last sequence number sent (0 before the first packet).
    pub fn last_seq(&self) -> u32 {
        u32::try_from(self.seq.load(Relaxed)).unwrap_or(u32::MAX)
    }

    /// The sequence number has passed [`SEQ_SOFT_LIMIT`]: time for IKE to rekey. The SA keeps
    /// working until 2^32 - 1 packets have been sent; then `encrypt` fails with
    /// [`EspError::SequenceExhausted`] (RFC 4303 §3.3.3: the counter never cycles).
    pub fn needs_rekey(&self) -> bool {
        self.last_seq() >= SEQ_SOFT_LIMIT
    }

    /// Turns the plaintext in `buf[payload]` into an ESP packet, in place.
    ///
    /// `buf[payload]` holds the plaintext: in transport mode the upper-layer segment (e.g. UDP
    /// header + L2TP, `next_header` 17), in tunnel mode a whole inner IP packet (`next_header`
    /// 4 or 41). The two modes are the same at this layer. The caller leaves at least
    /// `suite.header_len()` bytes of headroom before `payload.start` and
    /// `suite.max_trailer_len()` bytes of tailroom after `payload.end`.
    ///
    /// Writes SPI, sequence number and IV before the payload, padding (minimal, 1, 2, 3...),
    /// pad length and next header after it, encrypts, and appends the ICV. Returns the range of
    /// the ESP packet within `buf` (it starts `header_len()` bytes before `payload.start`).
    /// Allocates nothing; several threads may encrypt with one SA at once.
    pub fn encrypt(
        &self,
        buf: &mut [u8],
        payload: Range<usize>,
        next_header: u8,
    ) -> Result<Range<usize>, EspError> {
        let suite = self.suite;
        let header_len = suite.header_len();
        let iv_len = suite.encryption.iv_len();
        let block = suite.encryption.block_len();
        let icv_len = suite.icv_len();

        if payload.start > payload.end || payload.end > buf.len() {
            return Err(EspError::BufferTooSmall);
        }
        let payload_len = payload.end - payload.start;
        let start = payload
            .start
            .checked_sub(header_len)
            .ok_or(EspError::BufferTooSmall)?;
        let pad_len = (block - (payload_len + 2) % block) % block;
        // Offsets within the packet.
        let ct_end = header_len + payload_len + pad_len + 2;
        let packet_len = ct_end + icv_len;
        let end = start
            .checked_add(packet_len)
            .ok_or(EspError::BufferTooSmall)?;
        let packet = buf.get_mut(start..end).ok_or(EspError::BufferTooSmall)?;

        // Take the sequence number (and IV) before any crypto, so a failure can never lead to
        // a sequence number or GCM nonce being used twice.
        let seq = u32::try_from(self.seq.fetch_add(1, Relaxed) + 1)
            .map_err(|_| EspError::SequenceExhausted)?;

        let (header, rest) = packet.split_at_mut(header_len);
        let (ct, icv) = rest.split_at_mut(ct_end - header_len);
        header[..4].copy_from_slice(&self.spi.to_be_bytes());
        header[4..8].copy_from_slice(&seq.to_be_bytes());

        // Trailer: 1, 2, 3, ... (RFC 4303 §2.4), pad length, next header.
        let trailer = &mut ct[payload_len..];
        for (i, b) in trailer[..pad_len].iter_mut().enumerate() {
            *b = (i + 1) as u8;
        }
        trailer[pad_len] = pad_len as u8;
        trailer[pad_len + 1] = next_header;

        match suite.encryption {
            Encryption::AesGcm16 { .. } => {
                let iv = self.gcm_next_iv.fetch_add(1, Relaxed);
                if iv == u64::MAX {
                    return Err(EspError::SequenceExhausted);
                }
                let iv = iv.to_be_bytes();
                header[8..16].copy_from_slice(&iv);
                let mut aad = [0u8; 8];
                aad.copy_from_slice(&header[..8]);
                let tag = self.cipher.gcm_seal(iv, aad, ct)?;
                icv.copy_from_slice(tag.as_ref());
            }
            Encryption::AesCbc { .. } | Encryption::TripleDesCbc => {
                let mut iv = [0u8; MAX_IV_LEN];
                let iv = &mut iv[..iv_len];
                self.next_cbc_iv(iv);
                header[8..].copy_from_slice(iv);
                self.cipher.cbc_encrypt(iv, ct)?;
            }
            Encryption::Null => {}
        }
        if !suite.encryption.is_aead() {
            let (authed, icv) = packet.split_at_mut(ct_end);
            self.auth.sign(authed, icv)?;
        }

        self.packets.fetch_add(1, Relaxed);
        self.bytes.fetch_add(payload_len as u64, Relaxed);
        Ok(start..end)
    }

    fn next_cbc_iv(&self, iv: &mut [u8]) {
        #[cfg(test)]
        if let Some(forced) = self.forced_iv {
            iv.copy_from_slice(&forced[..iv.len()]);
            return;
        }
        if let Some(rng) = &self.iv_rng {
            locked(rng).fill_bytes(iv);
        }
    }

    /// Test hook: the packets use `iv` (CBC suites) instead of a random one.
    #[cfg(test)]
    pub(crate) fn force_next_iv(&mut self, iv: &[u8]) {
        let mut f = [0u8; MAX_IV_LEN];
        f[..iv.len()].copy_from_slice(iv);
        self.forced_iv = Some(f);
    }

    /// Test hook: pretend `last` was the last sequence number sent.
    #[cfg(test)]
    pub(crate) fn set_last_seq(&mut self, last: u32) {
        *self.seq.get_mut() = u64::from(last);
    }

    /// Test hook: the explicit IV of the next GCM packet.
    #[cfg(test)]
    pub(crate) fn set_next_gcm_iv(&mut self, iv: u64) {
        *self.gcm_next_iv.get_mut() = iv;
    }
}

/// An inbound (receiving) ESP SA. It is `Sync`: its replay window has its own lock, held only
/// to check and to mark a sequence number, never while decrypting.
pub struct InboundSa {
    spi: u32,
    suite: Suite,
    cipher: CipherState,
    auth: Auth,
    window: Mutex<ReplayWindow>,
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl core::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("suite", &self.suite)
            .field("highest_seq", &self.highest_seq())
            .field("packets", &self.packets())
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

impl InboundSa {
    /// Builds an SA from its SPI (our choice), suite and KEYMAT (encryption key (+ GCM salt)
    /// then integrity key, exactly `suite.keymat_len()` bytes).
    pub fn new(spi: u32, suite: Suite, keymat: &[u8]) -> Result<Self, EspError> {
        suite.check()?;
        if keymat.len() != suite.keymat_len() {
            return Err(EspError::BadKey);
        }
        let (enc_key, auth_key) = keymat
            .split_at_checked(suite.encryption.keymat_len())
            .ok_or(EspError::BadKey)?;
        Ok(InboundSa {
            spi,
            suite,
            cipher: CipherState::new(suite.encryption, enc_key, Direction::In)?,
            auth: Auth::new(suite.integrity, auth_key)?,
            window: Mutex::new(ReplayWindow::new()),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// The SPI this SA accepts.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The SA's suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Packets accepted (authenticated, fresh and well padded).
    pub fn packets(&self) -> u64 {
        self.packets.load(Relaxed)
    }

    /// Payload bytes accepted (plaintext without ESP overhead).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    /// An activity stamp: the number of packets accepted so far. The IKE layer, which owns the
    /// clock, compares successive readings to tell whether the SA is idle (e.g. for DPD).
    pub fn last_used(&self) -> u64 {
        self.packets()
    }

    /// Highest sequence number accepted so far (0: none yet).
    pub fn highest_seq(&self) -> u32 {
        locked(&self.window).top()
    }

    /// Authenticates and decrypts the ESP packet in place.
    ///
    /// `packet` starts at the SPI: from raw IP protocol 50 after the IP header, or from UDP
    /// port 4500 after [`classify_udp4500`](super::classify_udp4500) said it is ESP. Order of
    /// RFC 4303 §3.4: SPI, replay check (before the ICV, cheap), ICV (constant time; for GCM
    /// the tag, checked while decrypting), window update (only now), decryption, then the
    /// trailer: pad length and the padding pattern 1, 2, 3... of §2.4. An authentic packet with
    /// a bad trailer is still counted in the replay window.
    ///
    /// The plaintext payload is at `packet[result.payload]`; `result.next_header` says what it
    /// is (17 UDP in transport mode, 4 or 41 an inner IP packet in tunnel mode, 59 a dummy
    /// packet of RFC 4303 §2.6 that the caller drops). Allocates nothing. On error no
    /// unauthenticated plaintext is left in `packet`. Several threads may decrypt with one SA
    /// at once: the window is checked again when a number is marked, so of two copies of one
    /// packet decrypted side by side only one is accepted.
    pub fn decrypt(&self, packet: &mut [u8]) -> Result<Decrypted, EspError> {
        let suite = self.suite;
        let header_len = suite.header_len();
        let icv_len = suite.icv_len();

        let (spi, seq) = read_spi_seq(packet).ok_or(EspError::Truncated)?;
        if spi != self.spi {
            return Err(EspError::BadSpi);
        }
        if packet.len() < suite.min_packet_len() {
            return Err(EspError::Truncated);
        }
        locked(&self.window).check(seq)?;

        let ct_end = packet
            .len()
            .checked_sub(icv_len)
            .ok_or(EspError::Truncated)?;
        let ct_len = ct_end.checked_sub(header_len).ok_or(EspError::Truncated)?;
        if let Encryption::AesCbc { .. } | Encryption::TripleDesCbc = suite.encryption
            && ct_len % suite.encryption.block_len() != 0
        {
            return Err(EspError::BadLength);
        }

        match suite.encryption {
            Encryption::AesGcm16 { .. } => {
                let (header, body) = packet
                    .split_at_mut_checked(header_len)
                    .ok_or(EspError::Truncated)?;
                let aad: [u8; 8] = header
                    .get(..8)
                    .and_then(|h| h.try_into().ok())
                    .ok_or(EspError::Truncated)?;
                let iv: [u8; 8] = header
                    .get(8..16)
                    .and_then(|h| h.try_into().ok())
                    .ok_or(EspError::Truncated)?;
                self.cipher.gcm_open(iv, aad, body)?;
                self.mark(seq)?;
            }
            Encryption::AesCbc { .. } | Encryption::TripleDesCbc | Encryption::Null => {
                let (authed, icv) = packet.split_at_checked(ct_end).ok_or(EspError::Truncated)?;
                self.auth.verify(authed, icv)?;
                self.mark(seq)?;
                if !matches!(suite.encryption, Encryption::Null) {
                    let (header, body) = packet
                        .split_at_mut_checked(header_len)
                        .ok_or(EspError::Truncated)?;
                    let iv = header.get(8..).ok_or(EspError::Truncated)?;
                    let ct = body.get_mut(..ct_len).ok_or(EspError::Truncated)?;
                    self.cipher.cbc_decrypt(iv, ct)?;
                }
            }
        }

        let plaintext = packet.get(header_len..ct_end).ok_or(EspError::Truncated)?;
        let [.., pad_len, next_header] = *plaintext else {
            return Err(EspError::BadPadding);
        };
        let pad_len = usize::from(pad_len);
        let payload_len = ct_len
            .checked_sub(pad_len + 2)
            .ok_or(EspError::BadPadding)?;
        let padding = plaintext
            .get(payload_len..payload_len + pad_len)
            .ok_or(EspError::BadPadding)?;
        // After authentication, so this reveals nothing to a forger: no need for constant time.
        if !padding
            .iter()
            .enumerate()
            .all(|(i, &b)| usize::from(b) == i + 1)
        {
            return Err(EspError::BadPadding);
        }

        self.packets.fetch_add(1, Relaxed);
        self.bytes.fetch_add(payload_len as u64, Relaxed);
        Ok(Decrypted {
            seq,
            next_header,
            payload: header_len..header_len + payload_len,
        })
    }
}

impl InboundSa {
    /// Marks an authentic packet's number in the window, unless another thread took it since
    /// the first check.
    fn mark(&self, seq: u32) -> Result<(), EspError> {
        let mut w = locked(&self.window);
        w.check(seq)?;
        w.update(seq);
        Ok(())
    }
}

fn read_spi_seq(packet: &[u8]) -> Option<(u32, u32)> {
    let (spi, rest) = packet.split_first_chunk::<4>()?;
    let (seq, _) = rest.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*spi), u32::from_be_bytes(*seq)))
}
