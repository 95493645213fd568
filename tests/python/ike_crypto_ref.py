#!/usr/bin/env python3
"""Independent reference for Roadgate's IKEv1 crypto (core/src/ike/crypto).

Written from the RFC text (RFC 2409 sections 5, 5.5, 5.7, 6 and Appendix B; RFC 3526; RFC 3947
section 3.2; RFC 5903), not from the Rust code. Uses Python's `cryptography` package for ECDH,
finite-field DH, AES-CBC and 3DES-CBC, and the standard library's hmac/hashlib for the PRF and
hashes.

Usage:
  ike_crypto_ref.py check     prints "ok cryptography <version>" (exit 0) if everything is importable
  ike_crypto_ref.py primes    derives every MODP prime from its RFC formula (pi), proves the group
                              properties it can cheaply (Fermat + Miller-Rabin for p and q=(p-1)/2,
                              generator 2 of order q) and prints "prime <group-id> <hex>"
  ike_crypto_ref.py cases     reads {"cases": [ {...}, ... ]} (JSON, byte strings as hex) on stdin
                              and prints one "<case-id> <name> <hex>" line per computed value

Exit status is non-zero on any failure (bad input, a self-check that does not hold).
"""

import hashlib
import hmac
import ipaddress
import json
import random
import sys

try:
    import cryptography
    from cryptography.hazmat.primitives.asymmetric import dh, ec
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:  # cryptography >= 43 moved 3DES to the "decrepit" namespace
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # pragma: no cover - older cryptography
        TripleDES = algorithms.TripleDES
except ImportError as exc:  # pragma: no cover - reported to the Rust harness
    print(f"missing python module: {exc}", file=sys.stderr)
    sys.exit(3)


# ---------------------------------------------------------------------------------------------
# MODP groups: RFC 2409 section 6.1/6.2 and RFC 3526 all define the prime as
#   p = 2^N - 2^(N-64) - 1 + 2^64 * ( floor(2^(N-130) * pi) + k )
# with generator 2. We derive p from pi here instead of copying hex, so a typo in either
# implementation's constant cannot go unnoticed.

MODP_FORMULA = {  # group id: (bits N, k)
    1: (768, 149686),
    2: (1024, 129093),
    5: (1536, 741804),
    14: (2048, 124476),
    15: (3072, 1690314),
    16: (4096, 240904),
}


def _arctan_inv(x, one):
    """one * arctan(1/x) in fixed point (one = 2^prec), by the Taylor series."""
    total = term = one // x
    x2 = x * x
    n = 1
    sign = -1
    while term:
        term //= x2
        total += sign * (term // (2 * n + 1))
        sign = -sign
        n += 1
    return total


def _pi_fixed(bits):
    """floor(pi * 2^bits), via Machin's formula with 64 guard bits."""
    guard = 64
    one = 1 << (bits + guard)
    pi = 4 * (4 * _arctan_inv(5, one) - _arctan_inv(239, one))
    return pi >> guard


_PI_CACHE = {}


def modp_prime(group_id):
    if group_id not in _PI_CACHE:
        n, k = MODP_FORMULA[group_id]
        p = (1 << n) - (1 << (n - 64)) - 1 + (1 << 64) * (_pi_fixed(n - 130) + k)
        _PI_CACHE[group_id] = p
    return _PI_CACHE[group_id]


def _miller_rabin(n, rounds, rng):
    if n < 4:
        return n in (2, 3)
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        a = rng.randrange(2, n - 2)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def verify_modp_group(group_id):
    """Raises AssertionError unless the derived prime has the documented properties."""
    n, _ = MODP_FORMULA[group_id]
    p = modp_prime(group_id)
    q = (p - 1) // 2
    rng = random.Random(group_id)  # deterministic witnesses; a probabilistic check is enough here
    assert p.bit_length() == n, f"group {group_id}: {p.bit_length()} bits"
    assert (p >> (n - 64)) == (1 << 64) - 1 and (p & ((1 << 64) - 1)) == (1 << 64) - 1
    assert pow(2, p - 1, p) == 1, f"group {group_id}: Fermat base 2 fails"
    assert _miller_rabin(p, 1, rng), f"group {group_id}: p composite"
    assert pow(2, q - 1, q) == 1 and _miller_rabin(q, 1, rng), f"group {group_id}: not safe"
    # Generator 2: p = 7 (mod 8), so 2 is a quadratic residue and generates the order-q subgroup.
    assert pow(2, q, p) == 1, f"group {group_id}: 2 is not of order q"
    return p


# ---------------------------------------------------------------------------------------------
# Hashes, PRF

HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
          "sha512": hashlib.sha512}


def H(name, *parts):
    h = HASHES[name]()
    for part in parts:
        h.update(part)
    return h.digest()


def prf(name, key, *parts):
    """RFC 2409 section 4: with no PRF attribute negotiated, the PRF is HMAC of the hash."""
    return hmac.new(key, b"".join(parts), HASHES[name]).digest()


# ---------------------------------------------------------------------------------------------
# Diffie-Hellman

ECP_CURVES = {19: (ec.SECP256R1(), 32), 20: (ec.SECP384R1(), 48)}

_DH_CACHE = {}


def dh_pair(group_id, priv_hex):
    """(public value, private key object) for our private key."""
    cache_key = (group_id, priv_hex)
    if cache_key in _DH_CACHE:
        return _DH_CACHE[cache_key]
    x = int(priv_hex, 16)
    if group_id in ECP_CURVES:
        curve, flen = ECP_CURVES[group_id]
        key = ec.derive_private_key(x, curve)
        nums = key.public_key().public_numbers()
        # RFC 5903 section 7: the KE payload is x || y, each the field length, no point format octet
        public = nums.x.to_bytes(flen, "big") + nums.y.to_bytes(flen, "big")
    else:
        p = modp_prime(group_id)
        plen = (p.bit_length() + 7) // 8
        params = dh.DHParameterNumbers(p, 2)
        y = pow(2, x, p)
        key = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(y, params)).private_key()
        public = y.to_bytes(plen, "big")  # RFC 2409 section 5: padded to the group length
        assert key.public_key().public_numbers().y == y
    _DH_CACHE[cache_key] = (public, key)
    return public, key


_SHARED_CACHE = {}


def dh_shared(group_id, priv_hex, peer_public):
    cache_key = (group_id, priv_hex, peer_public)
    if cache_key not in _SHARED_CACHE:
        _SHARED_CACHE[cache_key] = _dh_shared(group_id, priv_hex, peer_public)
    return _SHARED_CACHE[cache_key]


def _dh_shared(group_id, priv_hex, peer_public):
    _, key = dh_pair(group_id, priv_hex)
    if group_id in ECP_CURVES:
        curve, flen = ECP_CURVES[group_id]
        assert len(peer_public) == 2 * flen
        peer = ec.EllipticCurvePublicNumbers(
            int.from_bytes(peer_public[:flen], "big"), int.from_bytes(peer_public[flen:], "big"),
            curve).public_key()
        shared = key.exchange(ec.ECDH(), peer)  # RFC 5903 section 9: the x coordinate
        assert len(shared) == flen
        return shared
    p = modp_prime(group_id)
    plen = (p.bit_length() + 7) // 8
    assert len(peer_public) == plen
    y = int.from_bytes(peer_public, "big")
    params = dh.DHParameterNumbers(p, 2)
    shared = key.exchange(dh.DHPublicNumbers(y, params).public_key())
    shared = shared.rjust(plen, b"\0")  # g^xy padded to the prime's length
    # second, library-free computation of the same value
    assert shared == pow(y, int(priv_hex, 16), p).to_bytes(plen, "big")
    return shared


# ---------------------------------------------------------------------------------------------
# Ciphers

def cipher_params(name):
    """(algorithm factory, key length, block length)"""
    if name == "3des":
        return TripleDES, 24, 8
    if name in ("aes128", "aes192", "aes256"):
        return algorithms.AES, int(name[3:]) // 8, 16
    raise ValueError(f"unknown cipher {name}")


def cbc(name, key, iv, data, encrypt=True):
    algo, _, _ = cipher_params(name)
    c = Cipher(algo(key), modes.CBC(iv))
    op = c.encryptor() if encrypt else c.decryptor()
    return op.update(data) + op.finalize()


# ---------------------------------------------------------------------------------------------
# One test case: a whole Main Mode + Quick Mode key schedule

def run_case(case):
    b = lambda k: bytes.fromhex(case[k])  # noqa: E731
    out = {}
    hname = case["hash"]
    group = case["group"]
    cname = case["cipher"]
    _, key_len, block_len = cipher_params(cname)
    cky_i, cky_r = b("cky_i"), b("cky_r")
    assert len(cky_i) == 8 and len(cky_r) == 8
    ni, nr = b("ni"), b("nr")

    gxi, _ = dh_pair(group, case["priv_i"])
    gxr, _ = dh_pair(group, case["priv_r"])
    gxy = dh_shared(group, case["priv_i"], gxr)
    assert gxy == dh_shared(group, case["priv_r"], gxi), "DH disagreement"
    out.update(gxi=gxi, gxr=gxr, gxy=gxy)

    # RFC 2409 section 5
    skeyid = prf(hname, b("psk"), ni, nr)
    out["skeyid_psk"] = skeyid
    out["skeyid_sig"] = prf(hname, ni + nr, gxy)
    skeyid_d = prf(hname, skeyid, gxy, cky_i, cky_r, b"\x00")
    skeyid_a = prf(hname, skeyid, skeyid_d, gxy, cky_i, cky_r, b"\x01")
    skeyid_e = prf(hname, skeyid, skeyid_a, gxy, cky_i, cky_r, b"\x02")
    out.update(skeyid_d=skeyid_d, skeyid_a=skeyid_a, skeyid_e=skeyid_e)

    # Appendix B: the cipher key is the first key_len bytes of SKEYID_e, or, if SKEYID_e is too
    # short, of Ka = K1 | K2 | ..., K1 = prf(SKEYID_e, 0x00), Kn = prf(SKEYID_e, K(n-1)).
    if len(skeyid_e) >= key_len:
        enc_key = skeyid_e[:key_len]
    else:
        ka, k = b"", b"\x00"
        while len(ka) < key_len:
            k = prf(hname, skeyid_e, k)
            ka += k
        enc_key = ka[:key_len]
    out["enc_key"] = enc_key
    # Appendix B: phase-1 IV = hash(g^xi | g^xr), truncated to the block size
    iv = H(hname, gxi, gxr)[:block_len]
    out["iv"] = iv

    sai_b = b("sai_b")
    out["hash_i"] = prf(hname, skeyid, gxi, gxr, cky_i, cky_r, sai_b, b("idii_b"))
    out["hash_r"] = prf(hname, skeyid, gxr, gxi, cky_r, cky_i, sai_b, b("idir_b"))

    # Encrypt a phase-1 message (already a whole number of blocks) and check the round trip.
    msg = b("msg")
    assert len(msg) % block_len == 0
    ct = cbc(cname, enc_key, iv, msg)
    assert cbc(cname, enc_key, iv, ct, encrypt=False) == msg
    out["ciphertext"] = ct

    # Appendix B: IV of a new exchange = hash(last phase-1 CBC block | M-ID) truncated
    mid = case["mid"].to_bytes(4, "big")
    out["exchange_iv"] = H(hname, ct[-block_len:], mid)[:block_len]

    # RFC 2409 section 5.5 (Quick Mode) and 5.7 (Informational)
    qni, qnr = b("qm_ni"), b("qm_nr")
    out["qm_hash1"] = prf(hname, skeyid_a, mid, b("qm_rest1"))
    out["qm_hash2"] = prf(hname, skeyid_a, mid, qni, b("qm_rest2"))
    out["qm_hash3"] = prf(hname, skeyid_a, b"\x00", mid, qni, qnr)
    out["info_hash"] = prf(hname, skeyid_a, mid, b("info_rest"))

    proto = bytes([case["protocol"]])
    spi = b("spi")

    def keymat(pfs):
        seed = pfs + proto + spi + qni + qnr
        out_, k = b"", b""
        while len(out_) < case["keymat_len"]:
            k = prf(hname, skeyid_d, k, seed)  # K1 has no prefix, Kn = prf(.., K(n-1) | ..)
            out_ += k
        return out_[: case["keymat_len"]]

    out["keymat"] = keymat(b"")
    qm_gxi, _ = dh_pair(group, case["qm_priv_i"])
    qm_gxr, _ = dh_pair(group, case["qm_priv_r"])
    qm_gxy = dh_shared(group, case["qm_priv_r"], qm_gxi)
    out["qm_gxy"] = qm_gxy
    out["keymat_pfs"] = keymat(qm_gxy)

    # RFC 3947 section 3.2: HASH(CKY-I | CKY-R | IP | Port)
    for i, (addr, port) in enumerate(case["nat"]):
        ip = ipaddress.ip_address(addr).packed
        out[f"nat_d_{i}"] = H(hname, cky_i, cky_r, ip, port.to_bytes(2, "big"))
    return out


def main(argv):
    cmd = argv[1] if len(argv) > 1 else "cases"
    if cmd == "check":
        print(f"ok cryptography {cryptography.__version__}")
        return 0
    if cmd == "primes":
        for gid in MODP_FORMULA:
            p = verify_modp_group(gid)
            print(f"prime {gid} {p:x}")
        return 0
    if cmd == "cases":
        doc = json.load(sys.stdin)
        lines = []
        for case in doc["cases"]:
            for name, value in run_case(case).items():
                lines.append(f"{case['id']} {name} {value.hex()}")
        print("\n".join(lines))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
