//! ESP throughput on one core, next to what `openssl speed` gets from the raw cipher and MAC.
//!
//! `cargo bench -p roadgate --bench esp` (harness = false: this program prints figures, it is
//! not a pass/fail test). For each suite it encrypts 1400-byte payloads in place, then decrypts
//! them back in place, in one reused buffer, and counts heap allocations inside the timed loops
//! (there should be none). The reference is `openssl speed` at 1408 bytes, the ciphertext size
//! of a 1400-byte payload: for CBC + HMAC the combined rate 1/(1/cipher + 1/mac) (encryption
//! with `-evp`, decryption with `-evp -decrypt`), for GCM the `-aead` rate (per-record init,
//! 13-byte AAD, tag: close to ESP's per-packet work). The ratio compares packets per second.
//!
//! Environment: `ESP_BENCH_SECONDS` (default 2) sets the time per measurement.
#![allow(unsafe_code)] // only the counting global allocator below
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use roadgate::esp::{Encryption, InboundSa, Integrity, OutboundSa, Suite};

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

struct Case {
    name: &'static str,
    suite: Suite,
    reference: Reference,
}

enum Reference {
    CbcHmac {
        cipher: &'static str,
        mac: &'static str,
    },
    Aead {
        cipher: &'static str,
    },
}

#[derive(Clone, Copy)]
struct Figures {
    encrypt_pps: f64,
    decrypt_pps: f64,
    round_trip_pps: f64,
    allocations: u64,
}

/// Runs `step` in batches until `duration` has passed; returns operations per second.
fn rate(duration: Duration, mut step: impl FnMut()) -> f64 {
    const BATCH: u64 = 256;
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..BATCH {
            step();
        }
        n += BATCH;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return n as f64 / elapsed.as_secs_f64();
        }
    }
}

fn measure(suite: Suite, duration: Duration) -> Figures {
    let keymat: Vec<u8> = (0..suite.keymat_len()).map(|i| i as u8 ^ 0xa5).collect();
    let head = suite.header_len();
    let mut buf = vec![0x5au8; head + PAYLOAD + suite.max_trailer_len()];
    let payload = head..head + PAYLOAD;

    // Warm up (and check the round trip once).
    {
        let mut out = OutboundSa::new(1, suite, &keymat).unwrap();
        let mut inb = InboundSa::new(1, suite, &keymat).unwrap();
        for _ in 0..2000 {
            let r = out.encrypt(&mut buf, payload.clone(), 17).unwrap();
            let d = inb.decrypt(&mut buf[r.clone()]).unwrap();
            assert_eq!(r.start + d.payload.start, head);
        }
    }

    let before = ALLOCATIONS.load(Ordering::Relaxed);

    let mut out = OutboundSa::new(2, suite, &keymat).unwrap();
    let encrypt_pps = rate(duration, || {
        let r = out
            .encrypt(black_box(&mut buf), payload.clone(), 17)
            .unwrap();
        black_box(r);
    });

    let mut out = OutboundSa::new(3, suite, &keymat).unwrap();
    let mut inb = InboundSa::new(3, suite, &keymat).unwrap();
    let round_trip_pps = rate(duration, || {
        let r = out
            .encrypt(black_box(&mut buf), payload.clone(), 17)
            .unwrap();
        let d = inb.decrypt(black_box(&mut buf[r])).unwrap();
        black_box(d);
    });

    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    // Decryption alone: the round trip's time less the encryption's.
    let decrypt_pps = 1.0 / (1.0 / round_trip_pps - 1.0 / encrypt_pps);
    Figures {
        encrypt_pps,
        decrypt_pps,
        round_trip_pps,
        allocations,
    }
}

/// Bytes per second from `openssl speed -mr` at CIPHER_BYTES, or None if it could not run.
fn openssl_rate(args: &[&str]) -> Option<f64> {
    let seconds = std::env::var("ESP_BENCH_SECONDS").unwrap_or_else(|_| "2".into());
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

struct Ref {
    encrypt_pps: f64,
    decrypt_pps: f64,
    detail: String,
}

fn reference(r: &Reference) -> Option<Ref> {
    let combined = |a: f64, b: f64| 1.0 / (1.0 / a + 1.0 / b);
    let mb = |x: f64| x / 1e6;
    match r {
        Reference::CbcHmac { cipher, mac } => {
            let enc = openssl_rate(&["-evp", cipher])?;
            let dec = openssl_rate(&["-evp", cipher, "-decrypt"])?;
            let hmac = openssl_rate(&["-hmac", mac])?;
            Some(Ref {
                encrypt_pps: combined(enc, hmac) / CIPHER_BYTES as f64,
                decrypt_pps: combined(dec, hmac) / CIPHER_BYTES as f64,
                detail: format!(
                    "openssl {cipher} enc {:.0} MB/s, dec {:.0} MB/s, hmac({mac}) {:.0} MB/s",
                    mb(enc),
                    mb(dec),
                    mb(hmac)
                ),
            })
        }
        Reference::Aead { cipher } => {
            let enc = openssl_rate(&["-evp", cipher, "-aead"])?;
            let dec = openssl_rate(&["-evp", cipher, "-aead", "-decrypt"])?;
            Some(Ref {
                encrypt_pps: enc / CIPHER_BYTES as f64,
                decrypt_pps: dec / CIPHER_BYTES as f64,
                detail: format!(
                    "openssl {cipher} -aead enc {:.0} MB/s, dec {:.0} MB/s",
                    mb(enc),
                    mb(dec)
                ),
            })
        }
    }
}

fn main() {
    let seconds: f64 = std::env::var("ESP_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let duration = Duration::from_secs_f64(seconds);
    let have_openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!("ESP bench: {PAYLOAD}-byte payloads, one core, {seconds} s per figure");
    println!(
        "load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !have_openssl {
        println!("openssl not on PATH: skipping the reference figures");
    }

    let sha1 = Integrity::HmacSha1_96;
    let cases = [
        Case {
            name: "AES-128-CBC + HMAC-SHA1-96",
            suite: Suite {
                encryption: Encryption::AesCbc { key_len: 16 },
                integrity: sha1,
            },
            reference: Reference::CbcHmac {
                cipher: "aes-128-cbc",
                mac: "sha1",
            },
        },
        Case {
            name: "AES-256-CBC + HMAC-SHA1-96",
            suite: Suite {
                encryption: Encryption::AesCbc { key_len: 32 },
                integrity: sha1,
            },
            reference: Reference::CbcHmac {
                cipher: "aes-256-cbc",
                mac: "sha1",
            },
        },
        Case {
            name: "AES-128-CBC + HMAC-SHA-256-128",
            suite: Suite {
                encryption: Encryption::AesCbc { key_len: 16 },
                integrity: Integrity::HmacSha256_128,
            },
            reference: Reference::CbcHmac {
                cipher: "aes-128-cbc",
                mac: "sha256",
            },
        },
        Case {
            name: "AES-128-GCM-16",
            suite: Suite {
                encryption: Encryption::AesGcm16 { key_len: 16 },
                integrity: Integrity::None,
            },
            reference: Reference::Aead {
                cipher: "aes-128-gcm",
            },
        },
        Case {
            name: "AES-256-GCM-16",
            suite: Suite {
                encryption: Encryption::AesGcm16 { key_len: 32 },
                integrity: Integrity::None,
            },
            reference: Reference::Aead {
                cipher: "aes-256-gcm",
            },
        },
    ];

    let mut total_allocations = 0;
    for case in &cases {
        let f = measure(case.suite, duration);
        total_allocations += f.allocations;
        let mbs = |pps: f64| pps * PAYLOAD as f64 / 1e6;
        println!();
        println!("{}", case.name);
        println!(
            "  ESP encrypt     {:>8.0} MB/s {:>9.0} pkt/s",
            mbs(f.encrypt_pps),
            f.encrypt_pps
        );
        println!(
            "  ESP decrypt     {:>8.0} MB/s {:>9.0} pkt/s   (round trip less encrypt)",
            mbs(f.decrypt_pps),
            f.decrypt_pps
        );
        println!(
            "  ESP enc+dec     {:>8.0} MB/s {:>9.0} pkt/s   allocations in timed loops: {}",
            mbs(f.round_trip_pps),
            f.round_trip_pps,
            f.allocations
        );
        if !have_openssl {
            continue;
        }
        match reference(&case.reference) {
            Some(r) => {
                let rt = 1.0 / (1.0 / r.encrypt_pps + 1.0 / r.decrypt_pps);
                println!("  reference: {}", r.detail);
                for (what, esp, raw) in [
                    ("encrypt", f.encrypt_pps, r.encrypt_pps),
                    ("decrypt", f.decrypt_pps, r.decrypt_pps),
                    ("enc+dec", f.round_trip_pps, rt),
                ] {
                    println!(
                        "  {what}: ESP {:>9.0} pkt/s vs raw cipher+MAC {:>9.0} pkt/s = {:>5.1} %",
                        esp,
                        raw,
                        100.0 * esp / raw
                    );
                }
            }
            None => println!("  reference: openssl speed failed for this algorithm"),
        }
    }
    println!();
    println!("heap allocations in all timed loops: {total_allocations}");
}
