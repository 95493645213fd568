//! Tests of the configuration file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::scratch::Scratch;

const EXAMPLE: &str = include_str!("../../../deploy/roadgate.example.toml");

/// Checks `text` as the file `roadgate.toml` (relative paths then point into the working
/// folder, where nothing is read by these tests unless they say so).
fn check(text: &str) -> Result<Settings, ConfigError> {
    parse(
        text,
        Some(Path::new("roadgate.toml")),
        &Overrides::default(),
    )
}

fn error(text: &str) -> String {
    check(text).unwrap_err().to_string()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn builtin_is_todays_behaviour() {
    let s = Settings::builtin(&Overrides::default()).unwrap();
    assert_eq!(s.file, None);
    assert_eq!(s.state_dir, PathBuf::from("state"));
    assert_eq!(s.admin_socket, PathBuf::from("state/admin.sock"));
    assert_eq!(s.psk_source, PskSource::StateDir);
    assert_eq!(s.ike.psk.lookup("192.0.2.1".parse().unwrap()), None);
    assert_eq!(s.listen.addr, DEFAULT_LISTEN[0]);
    assert_eq!(s.listen_addrs, DEFAULT_LISTEN);
    assert_eq!((s.listen.ike_port, s.listen.natt_port), (500, 4500));
    assert!(s.listen.raw_esp && !s.listen.test_echo && !s.listen.plain_l2tp);
    assert_eq!(s.listen.l2tp_port, Some(L2TP_PORT));
    assert_eq!(s.listen.socket_buffer, crate::io::DEFAULT_SOCKET_BUFFER);
    assert_eq!(s.ike.natt_port, 4500);
    assert_eq!(s.pool, vec![(ip("10.77.0.10"), ip("10.77.0.250"))]);
    assert_eq!(s.pool_size(), 241);
    assert_eq!(s.local_address(), ip("10.77.0.1"));
    assert_eq!(
        s.auth_methods(),
        &[AuthProtocol::MsChapV2, AuthProtocol::Pap]
    );
    assert_eq!(s.ppp.mru, 1400);
    assert_eq!(s.dataplane.mtu, 1400);
    assert!(s.dataplane.tun);
    assert_eq!(
        s.dataplane.routes,
        dataplane::range_prefixes(ip("10.77.0.10"), ip("10.77.0.250"))
    );
    assert_eq!(s.auth_backends, vec![AuthBackend::Local]);
    assert_eq!(s.log, LogSettings::default());
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    // The proposals are the modules' own defaults.
    assert_eq!(
        format!("{:?}", s.ike.phase1),
        format!("{:?}", Phase1Policy::default())
    );
    assert_eq!(
        format!("{:?}", s.ike.phase2),
        format!("{:?}", Phase2Policy::default())
    );
    // An empty file is the built-in configuration.
    let empty = check("# nothing\n").unwrap();
    assert_eq!(
        empty.summary().lines().skip(1).collect::<Vec<_>>(),
        s.summary().lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn the_example_parses_and_documents_the_defaults() {
    let example = check(EXAMPLE).unwrap();
    assert!(example.warnings.is_empty(), "{:?}", example.warnings);
    let builtin = Settings::builtin(&Overrides::default()).unwrap();
    assert_eq!(example.state_dir, PathBuf::from("/var/lib/roadgate"));
    assert_eq!(
        example.admin_socket,
        PathBuf::from("/var/lib/roadgate/admin.sock")
    );
    // Every other value it shows is the default.
    let same = |a: &Settings, b: &Settings| {
        assert_eq!(format!("{:?}", a.ike.phase1), format!("{:?}", b.ike.phase1));
        assert_eq!(format!("{:?}", a.ike.phase2), format!("{:?}", b.ike.phase2));
        assert_eq!(format!("{:?}", a.ike.psk), format!("{:?}", b.ike.psk));
        assert_eq!(
            (
                a.ike.nat_t,
                a.ike.windows_nat_workaround,
                a.ike.dpd_interval,
                a.ike.dpd_timeout
            ),
            (
                b.ike.nat_t,
                b.ike.windows_nat_workaround,
                b.ike.dpd_interval,
                b.ike.dpd_timeout
            )
        );
        assert_eq!(format!("{:?}", a.listen), format!("{:?}", b.listen));
        assert_eq!(a.listen_addrs, b.listen_addrs);
        let lns = |l: &LnsConfig| {
            (
                l.host_name.clone(),
                l.receive_window,
                l.hello_interval,
                l.max_tunnels,
                l.max_tunnels_per_peer,
                l.max_sessions_per_tunnel,
                l.max_half_open,
                l.secret.is_some(),
            )
        };
        assert_eq!(lns(&a.lns), lns(&b.lns));
        assert_eq!(format!("{:?}", a.ppp), format!("{:?}", b.ppp));
        assert_eq!(a.pool, b.pool);
        assert_eq!(format!("{:?}", a.dataplane), format!("{:?}", b.dataplane));
        assert_eq!(a.auth_backends, b.auth_backends);
        assert_eq!(a.log, b.log);
        assert_eq!(a.web, b.web);
        assert_eq!(a.certificates, b.certificates);
    };
    same(&example, &builtin);
    // Every key the example names is a key: switching a few values shows that they are read.
    let changed = EXAMPLE
        .replace("mtu = 1400", "mtu = 1300")
        .replace("max_tunnels_per_peer = 4", "max_tunnels_per_peer = 2")
        .replace("tun_name = \"rg0\"", "tun_name = \"vpn7\"")
        .replace("format = \"text\"", "format = \"json\"");
    let c = check(&changed).unwrap();
    assert_eq!((c.ppp.mru, c.dataplane.mtu), (1300, 1300));
    assert_eq!(c.lns.max_tunnels_per_peer, 2);
    assert_eq!(c.dataplane.tun_name, "vpn7");
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn errors_name_the_file_the_key_and_the_reason() {
    assert_eq!(
        error("[server]\nsocket_buffer = 4096\n"),
        "roadgate.toml: server.socket_buffer: 4096 bytes: give 65536 (64 KiB) to 1073741824 (1 GiB)"
    );
    assert_eq!(
        check("[server]\nsocket_buffer = 1048576\n")
            .unwrap()
            .listen
            .socket_buffer,
        1 << 20
    );
    assert_eq!(
        error("[ppp]\ndns = [\"8.8.8.888\"]\n"),
        "roadgate.toml: ppp.dns[0]: \"8.8.8.888\" is not an IPv4 address"
    );
    assert_eq!(
        error("[ppp]\npool = [\"10.77.0.10-10.77.0.20\", \"10.77.0.15-10.77.0.30\"]\n"),
        "roadgate.toml: ppp.pool[1]: \"10.77.0.15-10.77.0.30\" overlaps ppp.pool[0] \
         (\"10.77.0.10-10.77.0.20\")"
    );
    // Sharing one address is an overlap; adjoining ranges are not.
    assert!(
        error("[ppp]\npool = [\"10.77.0.20-10.77.0.30\", \"10.77.0.10-10.77.0.20\"]\n")
            .contains("ppp.pool[1]: \"10.77.0.10-10.77.0.20\" overlaps ppp.pool[0]")
    );
    assert_eq!(
        check("[ppp]\npool = [\"10.77.0.21-10.77.0.30\", \"10.77.0.10-10.77.0.20\"]\n")
            .unwrap()
            .pool_size(),
        21
    );
    let e = error("[ppp]\npool = [\"10.77.0.0/24\"]\n");
    assert!(
        e.starts_with(
            "roadgate.toml: ppp.pool[0]: \"10.77.0.0/24\" contains ppp.local_address 10.77.0.1"
        ),
        "{e}"
    );
    assert_eq!(
        error("[ppp]\ndns = [\"1.1.1.1\", \"8.8.8.8\", \"9.9.9.9\"]\n"),
        "roadgate.toml: ppp.dns: 3 servers; clients take at most two"
    );
    assert_eq!(
        error("[server]\nike_port = 4500\n"),
        "roadgate.toml: server.natt_port: 4500 is server.ike_port too: the two ports must differ"
    );
    assert!(
        error("[server]\nnatt_port = 1701\n").contains("server.natt_port: 1701 is the L2TP port")
    );
    assert_eq!(
        error("[server]\nike_port = 70000\n"),
        "roadgate.toml: server.ike_port: 70000 is out of range: 1..=65535"
    );
    assert_eq!(
        error("[ppp]\nmtu = 9000\n"),
        "roadgate.toml: ppp.mtu: 9000 is out of range: 576..=1500"
    );
    assert_eq!(
        error("[ppp]\nmtu = 575\n"),
        "roadgate.toml: ppp.mtu: 575 is out of range: 576..=1500"
    );
    assert!(check("[ppp]\nmtu = 576\n").is_ok() && check("[ppp]\nmtu = 1500\n").is_ok());
    assert_eq!(
        error("[ipsec]\npsk = \"abcdefghij\"\npsk_file = \"/x\"\n"),
        "roadgate.toml: ipsec.psk: give either ipsec.psk or ipsec.psk_file, not both"
    );
    assert_eq!(
        error("[ipsec]\npsk = \"\"\n"),
        "roadgate.toml: ipsec.psk: the pre-shared key is empty"
    );
    assert_eq!(
        error("[dataplane]\nidle_timeout = \"5x\"\n"),
        "roadgate.toml: dataplane.idle_timeout: \"5x\" is not a duration: unknown unit \"x\" \
         (units: s, m, h, d) (e.g. \"30s\", \"5m\", \"1h\")"
    );
    assert_eq!(
        error("[ipsec]\ndpd_timeout = -5\n"),
        "roadgate.toml: ipsec.dpd_timeout: -5 is negative"
    );
    assert!(error("[ipsec]\ndpd_timeout = 0\n").contains("ipsec.dpd_timeout: 0s is too short"));
    assert!(error("[dataplane]\nsession_timeout = \"400d\"\n").contains("longer than a year"));
    assert!(
        error("[dataplane]\ntun_name = \"a-much-too-long-name\"\n")
            .starts_with("roadgate.toml: dataplane.tun_name: ")
    );
    assert!(error("[dataplane]\ntun_name = \"rg/0\"\n").contains("not an interface name"));
    assert!(
        error("[l2tp]\nreceive_window = 0\n").contains("l2tp.receive_window: 0 is out of range")
    );
    assert!(error("[ppp]\nlcp_echo_failures = 0\n").contains("ppp.lcp_echo_failures"));
}

#[test]
fn typos_and_syntax_errors_are_refused_with_their_place() {
    let e = error("[server]\nike_prot = 500\n");
    assert!(e.starts_with("roadgate.toml: "), "{e}");
    assert!(e.contains("line 2"), "{e}");
    assert!(e.contains("unknown field `ike_prot`"), "{e}");
    let e = error("[sever]\n");
    assert!(e.contains("unknown field `sever`"), "{e}");
    let e = error("[ipsec.phase1]\ncipher = [\"aes128\"]\n");
    assert!(e.contains("unknown field `cipher`"), "{e}");
    let e = error("[ppp]\npool = [\"10.0.0.1-10.0.0.9\"\n");
    assert!(e.contains("line 2, column"), "{e}");
    let e = error("[server]\nraw_esp = \"yes\"\n");
    assert!(e.contains("line 2"), "{e}");
    let e = error("[[ipsec.peers]]\naddres = \"192.0.2.1\"\n");
    assert!(e.contains("unknown field `addres`"), "{e}");
}

#[test]
fn proposal_names() {
    let s = check(
        "[ipsec.phase1]\nciphers = [\"AES256\"]\nhashes = [\"sha256\"]\ngroups = [\"ecp256\", \"modp2048\"]\n\
         [ipsec.phase2]\nciphers = [\"aes128gcm16\"]\nintegrity = []\nrequire_pfs = true\n",
    )
    .unwrap();
    assert_eq!(
        s.ike.phase1.encryption,
        vec![CipherAlg::AesCbc { key_len: 32 }]
    );
    assert_eq!(s.ike.phase1.hash, vec![HashAlg::Sha256]);
    assert_eq!(
        s.ike.phase1.groups,
        vec![DhGroup::Ecp256, DhGroup::Modp2048]
    );
    // PFS groups default to the phase-1 groups.
    assert_eq!(
        s.ike.phase2.pfs_groups,
        vec![DhGroup::Ecp256, DhGroup::Modp2048]
    );
    assert_eq!(
        s.ike.phase2.encryption,
        vec![esp::Encryption::AesGcm16 { key_len: 16 }]
    );
    assert!(s.ike.phase2.integrity.is_empty() && s.ike.phase2.require_pfs);

    assert_eq!(
        error("[ipsec.phase1]\nhashes = [\"sha1\", \"md5\"]\n"),
        "roadgate.toml: ipsec.phase1.hashes[1]: unknown hash \"md5\" (MD5 is not supported); \
         valid: sha1, sha256, sha384, sha512"
    );
    assert!(error("[ipsec.phase1]\ngroups = [\"modp768\"]\n").contains("never allowed"));
    assert!(
        error("[ipsec.phase2]\nciphers = [\"chacha20\"]\n")
            .contains("valid: aes128gcm16, aes192gcm16, aes256gcm16, aes128, aes192, aes256, 3des")
    );
    assert!(error("[ipsec.phase1]\nciphers = []\n").contains("ipsec.phase1.ciphers: is empty"));
    assert!(error("[ipsec.phase1]\nciphers = [\"aes128\", \"aes128\"]\n").contains("listed twice"));
    assert_eq!(
        error("[ipsec.phase2]\nciphers = [\"aes128\"]\nintegrity = []\n"),
        "roadgate.toml: ipsec.phase2.integrity: is empty, but ipsec.phase2.ciphers has CBC \
         ciphers, which need an integrity algorithm: name one, or list only AES-GCM ciphers"
    );
    assert!(
        error("[ipsec.phase2]\nrequire_pfs = true\npfs_groups = []\n")
            .contains("pfs_groups: is empty")
    );

    // 3DES only with allow_3des; allow_3des adds it to both lists.
    assert_eq!(
        error("[ipsec.phase1]\nciphers = [\"aes128\", \"3des\"]\n"),
        "roadgate.toml: ipsec.phase1.ciphers[1]: \"3des\" needs ipsec.allow_3des = true (only \
         very old clients need it)"
    );
    let s = check("[ipsec]\nallow_3des = true\n").unwrap();
    assert_eq!(
        s.ike.phase1.encryption.last(),
        Some(&CipherAlg::TripleDesCbc)
    );
    assert_eq!(
        s.ike.phase2.encryption.last(),
        Some(&esp::Encryption::TripleDesCbc)
    );
    let s = check("[ipsec]\nallow_3des = true\n[ipsec.phase1]\nciphers = [\"3des\"]\n").unwrap();
    assert_eq!(s.ike.phase1.encryption, vec![CipherAlg::TripleDesCbc]);

    let s = check(
        "[ipsec]\ndpd_interval = 0\ndpd_timeout = \"1m30s\"\nnat_traversal = false\n\
         windows_nat_workaround = false\n[ipsec.phase1]\nmax_lifetime = \"2h\"\n\
         [ipsec.phase2]\nmax_lifetime = 3600\nmax_lifetime_kb = 500000\nsha256_96 = true\n",
    )
    .unwrap();
    assert_eq!(s.ike.dpd_interval, None);
    assert_eq!(s.ike.dpd_timeout, Duration::from_secs(90));
    assert!(!s.ike.nat_t && !s.ike.windows_nat_workaround);
    assert_eq!(s.ike.phase1.max_lifetime, Duration::from_secs(7200));
    assert_eq!(s.ike.phase2.max_lifetime, Duration::from_secs(3600));
    assert_eq!(s.ike.phase2.max_lifetime_kb, Some(500_000));
    assert!(s.ike.phase2.sha256_96);
    assert!(error("[ipsec.phase2]\nmax_lifetime = \"30s\"\n").contains("at least 1m"));
}

#[test]
fn ipsec_half_open_limits_and_handshake_queue() {
    let d = ike::Config::default();
    let s = check("[ipsec]\n").unwrap();
    assert_eq!(
        (
            s.ike.max_half_open,
            s.ike.max_half_open_per_source,
            s.ike.max_half_open_per_v6_prefix,
            s.ike.handshake_queue
        ),
        (
            d.max_half_open,
            d.max_half_open_per_source,
            d.max_half_open_per_v6_prefix,
            d.handshake_queue
        )
    );
    assert!((s.ike.early_drop_threshold - 0.5).abs() < f64::EPSILON);
    let s = check(
        "[ipsec]\nmax_half_open = 1000\nmax_half_open_per_source = 8\n\
         max_half_open_per_v6_prefix = 32\nearly_drop_threshold = 0.75\nhandshake_queue = 16\n",
    )
    .unwrap();
    assert_eq!(s.ike.max_half_open, 1000);
    assert_eq!(s.ike.max_half_open_per_source, 8);
    assert_eq!(s.ike.max_half_open_per_v6_prefix, 32);
    assert!((s.ike.early_drop_threshold - 0.75).abs() < f64::EPSILON);
    assert_eq!(s.ike.handshake_queue, 16);
    assert_eq!(
        check("[ipsec]\nhandshake_threads = 3\n")
            .unwrap()
            .ike
            .handshake_threads,
        3
    );
    assert!(error("[ipsec]\nhandshake_threads = 65\n").contains("ipsec.handshake_threads: 65"));
    assert_eq!(check("").unwrap().listen.workers, 0, "one per core");
    assert_eq!(
        check("[dataplane]\nworkers = 2\n").unwrap().listen.workers,
        2
    );
    assert!(error("[dataplane]\nworkers = 65\n").contains("dataplane.workers: 65"));
    assert!(error("[dataplane]\nworkers = -1\n").contains("dataplane.workers: -1"));
    assert_eq!(
        error("[ipsec]\nhandshake_queue = 0\n"),
        "roadgate.toml: ipsec.handshake_queue: 0 is out of range: 1..=1048576"
    );
    assert!(
        error("[ipsec]\nearly_drop_threshold = 1.5\n")
            .contains("ipsec.early_drop_threshold: 1.5 is out of range")
    );
    assert!(
        error("[ipsec]\nmax_half_open = 10\nmax_half_open_per_source = 20\n")
            .contains("ipsec.max_half_open_per_source: 20 is above ipsec.max_half_open (10)")
    );
    let s = check("[ipsec]\nmax_half_open_per_source = 1000\n").unwrap();
    assert_eq!(
        s.ike.max_half_open_per_v6_prefix, 1000,
        "raised to the per-address limit"
    );
    assert!(
        error("[ipsec]\nmax_half_open_per_source = 20\nmax_half_open_per_v6_prefix = 10\n")
            .contains("ipsec.max_half_open_per_v6_prefix: 10 is below")
    );
}

#[test]
fn keys_inline_from_files_and_per_peer() {
    let dir = Scratch::new("psk");
    dir.write("psk", "from-a-file-123\n");
    dir.write("peer", "peer-key-4567\r\n");
    dir.write("empty", "\n");
    let cfg = dir.write(
        "roadgate.toml",
        "[ipsec]\npsk_file = \"psk\"\n\
         [[ipsec.peers]]\naddress = \"198.51.100.7\"\npsk_file = \"peer\"\n\
         [[ipsec.peers]]\naddress = \"2001:db8::7\"\npsk = \"inline-peer-key\"\n",
    );
    let s = load(&cfg).unwrap();
    assert_eq!(s.psk_source, PskSource::File(dir.0.join("psk")));
    let lookup = |a: &str| s.ike.psk.lookup(a.parse().unwrap()).map(<[u8]>::to_vec);
    assert_eq!(lookup("192.0.2.1"), Some(b"from-a-file-123".to_vec()));
    assert_eq!(lookup("198.51.100.7"), Some(b"peer-key-4567".to_vec()));
    assert_eq!(lookup("2001:db8::7"), Some(b"inline-peer-key".to_vec()));
    assert!(s.summary().contains("2 per-peer keys"), "{}", s.summary());

    let e = load(&dir.write("bad.toml", "[ipsec]\npsk_file = \"missing\"\n")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("ipsec.psk_file"));
    assert!(e.to_string().contains("cannot read "), "{e}");
    let e = load(&dir.write("bad.toml", "[ipsec]\npsk_file = \"empty\"\n")).unwrap_err();
    assert!(e.to_string().ends_with("holds an empty key"), "{e}");
    let e = load(&dir.write("bad.toml", "[[ipsec.peers]]\naddress = \"192.0.2.1\"\n")).unwrap_err();
    assert!(
        e.to_string()
            .contains("ipsec.peers[0].psk: give ipsec.peers[0].psk or"),
        "{e}"
    );
    let e = load(&dir.write(
        "bad.toml",
        "[[ipsec.peers]]\naddress = \"192.0.2.1\"\npsk = \"abcdefghij\"\n\
         [[ipsec.peers]]\naddress = \"192.0.2.1\"\npsk = \"abcdefghij\"\n",
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("ipsec.peers[1].address: 192.0.2.1 has a key already"),
        "{e}"
    );
    let e = load(&dir.write("bad.toml", "[[ipsec.peers]]\npsk = \"abcdefghij\"\n")).unwrap_err();
    assert!(
        e.to_string().contains("ipsec.peers[0].address: is missing"),
        "{e}"
    );

    // A short key is taken, with a warning; an inline key is the default key.
    let s = check("[ipsec]\npsk = \"short\"\n").unwrap();
    assert_eq!(s.psk_source, PskSource::Inline);
    assert_eq!(s.warnings.len(), 1);
    assert!(
        s.warnings[0].contains("only 5 characters"),
        "{:?}",
        s.warnings
    );
    assert!(
        check("[ipsec]\npsk = \"eight888\"\n")
            .unwrap()
            .warnings
            .is_empty()
    );
}

#[test]
fn relative_paths_follow_the_file_and_flags_the_working_folder() {
    let dir = Scratch::new("paths");
    let cfg = dir.write("r.toml", "[server]\nstate_dir = \"st\"\n");
    let s = load(&cfg).unwrap();
    assert_eq!(s.state_dir, dir.0.join("st"));
    assert_eq!(s.admin_socket, dir.0.join("st").join("admin.sock"));
    let o = Overrides {
        state_dir: Some(PathBuf::from("other")),
        ..Overrides::default()
    };
    let s = load_with(Some(&cfg), &o).unwrap();
    assert_eq!(s.state_dir, PathBuf::from("other"));
    assert_eq!(
        admin_socket_path(Some(&cfg), None).unwrap(),
        dir.0.join("st/admin.sock")
    );
    assert_eq!(
        admin_socket_path(Some(&cfg), Some(Path::new("x"))).unwrap(),
        PathBuf::from("x/admin.sock")
    );
    assert_eq!(
        admin_socket_path(None, None).unwrap(),
        PathBuf::from("state/admin.sock")
    );
    let cfg = dir.write("s.toml", "[server]\nadmin_socket = \"/run/rg.sock\"\n");
    assert_eq!(
        admin_socket_path(Some(&cfg), Some(Path::new("x"))).unwrap(),
        PathBuf::from("/run/rg.sock")
    );
    let long = format!("[server]\nadmin_socket = \"/{}\"\n", "a".repeat(120));
    assert!(error(&long).contains("a Unix socket path has at most 107"));

    let e = load(&dir.0.join("none.toml")).unwrap_err();
    assert!(
        e.to_string()
            .contains("none.toml: cannot read the configuration file"),
        "{e}"
    );
}

#[test]
fn flags_override_the_file() {
    let file = "[server]\nlisten = [\"192.0.2.1\"]\nike_port = 1500\n[ipsec]\npsk = \"file-psk-1234\"\n\
                [ppp]\npool = [\"10.1.0.10-10.1.0.20\"]\nlocal_address = \"10.1.0.1\"\ndns = [\"192.0.2.53\"]\n";
    let dir = Scratch::new("flags");
    let psk = dir.write("psk", "flag-psk-5678\n");
    let o = Overrides {
        listen: vec![ip("203.0.113.2").into(), "2001:db8::2".parse().unwrap()],
        natt_port: Some(14500),
        psk_file: Some(psk.clone()),
        no_raw_esp: true,
        pool: vec!["10.2.0.0/28".into(), "10.2.1.5".into()],
        ppp_address: Some(ip("10.2.0.200")),
        dns: vec![ip("192.0.2.54"), ip("192.0.2.55")],
        no_tun: true,
        tun_name: Some("vpn0".into()),
        test_echo: true,
        plain_l2tp: true,
        allow_3des: true,
        ..Overrides::default()
    };
    let s = parse(file, Some(Path::new("roadgate.toml")), &o).unwrap();
    assert_eq!(s.listen.addr, "203.0.113.2".parse::<IpAddr>().unwrap());
    assert_eq!(
        s.listen_addrs,
        ["203.0.113.2", "2001:db8::2"].map(|a| a.parse::<IpAddr>().unwrap())
    );
    assert_eq!((s.listen.ike_port, s.listen.natt_port), (1500, 14500));
    assert!(!s.listen.raw_esp && s.listen.test_echo && s.listen.plain_l2tp);
    assert_eq!(s.psk_source, PskSource::File(psk));
    assert_eq!(
        s.ike.psk.lookup("192.0.2.9".parse().unwrap()),
        Some(&b"flag-psk-5678"[..])
    );
    assert_eq!(
        s.pool,
        vec![
            (ip("10.2.0.1"), ip("10.2.0.14")),
            (ip("10.2.1.5"), ip("10.2.1.5"))
        ]
    );
    assert_eq!(s.pool_size(), 15);
    assert_eq!(
        s.dataplane.routes,
        vec![
            (ip("10.2.0.1"), 32),
            (ip("10.2.0.2"), 31),
            (ip("10.2.0.4"), 30),
            (ip("10.2.0.8"), 30),
            (ip("10.2.0.12"), 31),
            (ip("10.2.0.14"), 32),
            (ip("10.2.1.5"), 32)
        ]
    );
    assert_eq!(s.dataplane.local_address, ip("10.2.0.200"));
    assert!(!s.dataplane.tun);
    assert_eq!(s.dataplane.tun_name, "vpn0");
    let pppd_lite::Role::Server(server) = &s.ppp.role else {
        panic!("server role")
    };
    assert_eq!(server.dns, [Some(ip("192.0.2.54")), Some(ip("192.0.2.55"))]);
    assert_eq!(server.local_address, ip("10.2.0.200"));
    assert!(s.ike.phase1.encryption.contains(&CipherAlg::TripleDesCbc));

    // An error in what a flag set says so.
    let o = Overrides {
        pool: vec!["10.1.0.0-10.1.0.5".into()],
        ..Overrides::default()
    };
    let e = parse(file, Some(Path::new("roadgate.toml")), &o).unwrap_err();
    assert_eq!(e.flag, Some("--pool"));
    assert!(
        e.to_string().starts_with(
            "roadgate.toml: ppp.pool[0] (set by --pool): \"10.1.0.0-10.1.0.5\" contains"
        ),
        "{e}"
    );
    // Without a file the message has no file name.
    let e = Settings::builtin(&Overrides {
        pool: vec!["nonsense".into()],
        ..Overrides::default()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ppp.pool[0] (set by --pool): \"nonsense\" is not a pool entry: expected FIRST-LAST, \
         ADDRESS/LEN or one address"
    );
    let e = Settings::builtin(&Overrides {
        ike_port: Some(4500),
        ..Overrides::default()
    })
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("server.natt_port"));
}

#[test]
fn listen_addresses() {
    let s = check("[server]\nlisten = [\"::\", \"0.0.0.0\", \"192.0.2.1\"]\n").unwrap();
    assert_eq!(s.listen.addr, DEFAULT_LISTEN[1]);
    assert_eq!(s.listen_addrs, [DEFAULT_LISTEN[1], DEFAULT_LISTEN[0]]);
    assert_eq!(
        s.warnings,
        ["server.listen: 192.0.2.1 is served through 0.0.0.0, which is listed too"]
    );
    // IPv6 only, and several addresses of one family.
    let s = check("[server]\nlisten = [\"2001:db8::2\"]\n").unwrap();
    assert_eq!(s.listen.addr, "2001:db8::2".parse::<IpAddr>().unwrap());
    let s = check("[server]\nlisten = [\"203.0.113.2\", \"203.0.113.5\", \"::\"]\n").unwrap();
    assert_eq!(s.listen_addrs.len(), 3);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert!(error("[server]\nlisten = []\n").contains("server.listen: is empty"));
    assert_eq!(
        error("[server]\nlisten = [\"0.0.0.0\", \"localhost\"]\n"),
        "roadgate.toml: server.listen[1]: \"localhost\" is not an IP address"
    );
    assert!(error("[server]\nlisten = [\"0.0.0.0\", \"0.0.0.0\"]\n").contains("listed twice"));
}

#[test]
fn ppp_and_auth_settings() {
    let s = check(
        "[ppp]\nauth = [\"pap\"]\nwins = [\"192.0.2.137\"]\nlcp_echo_interval = 0\n\
         lcp_echo_failures = 7\npool = [\"10.9.0.0/16\", \"10.10.0.1-10.10.0.3\"]\nlocal_address = \"10.8.0.1\"\n",
    )
    .unwrap();
    assert_eq!(s.auth_methods(), &[AuthProtocol::Pap]);
    assert_eq!(s.ppp.echo_interval, None);
    assert_eq!(s.ppp.echo_failures, 7);
    assert_eq!(s.pool_size(), 65534 + 3);
    let pppd_lite::Role::Server(server) = &s.ppp.role else {
        panic!("server role")
    };
    assert_eq!(server.nbns, [Some(ip("192.0.2.137")), None]);
    assert!(error("[ppp]\nauth = [\"chap\"]\n").contains("ppp.auth[0]: \"chap\" (CHAP-MD5) needs"));
    assert!(
        error("[ppp]\nauth = [\"mschapv2\", \"eap\"]\n")
            .contains("ppp.auth[1]: \"eap\" needs an EAP server")
    );
    assert!(error("[ppp]\nauth = []\n").contains("ppp.auth: is empty"));
    assert!(
        error("[ppp]\npool = [\"10.0.0.0/8\"]\nlocal_address = \"192.0.2.1\"\n")
            .contains("at most 1048576")
    );
    assert!(
        error("[auth]\nbackends = [\"local\", \"radius\"]\n")
            .contains("auth.backends[1]: \"radius\" needs a [radius] section")
    );
    assert!(error("[auth]\nbackends = [\"pam\", \"pam\"]\n").contains("listed twice"));
    assert!(
        error("[auth]\nbackends = [\"pam\"]\n[ppp]\nauth = [\"mschapv2\"]\n")
            .contains("ppp.auth[0]: \"mschapv2\" needs the NT hash or a RADIUS server")
    );
    // The default methods with PAM alone: a warning, not an error.
    let s = check("[auth]\nbackends = [\"pam\"]\n").unwrap();
    assert!(
        s.warnings.iter().any(|w| w
            .starts_with("MS-CHAPv2 is offered to clients but no authentication backend (pam)")),
        "{:?}",
        s.warnings
    );
    let s = check(
        "[auth]\nbackends = [\"radius\", \"local\"]\n[ppp]\nauth = [\"chap\", \"pap\"]\n\
         [radius]\nservers = [{ address = \"192.0.2.5:1812\", secret = \"s\", role = \"both\" }]\n\
         [dynauth]\nclients = [{ address = \"192.0.2.5\", secret = \"d\" }]\n",
    )
    .unwrap();
    assert_eq!(s.radius.as_ref().map(|r| r.client.servers.len()), Some(2));
    // Named pools: routed, checked against the main pool and each other.
    let np = check("[ppp]\npools = { guests = [\"10.78.0.10-10.78.0.20\"] }\n").unwrap();
    assert_eq!(
        np.named_pools,
        vec![(
            "guests".to_string(),
            vec![(ip("10.78.0.10"), ip("10.78.0.20"))]
        )]
    );
    assert!(
        np.dataplane.routes.iter().any(|r| r.0 == ip("10.78.0.20")),
        "{:?}",
        np.dataplane.routes
    );
    assert!(
        error("[ppp]\npools = { guests = [\"10.77.0.100-10.77.0.120\"] }\n")
            .contains("ppp.pools.guests[0]: \"10.77.0.100-10.77.0.120\" overlaps ppp.pool[0]")
    );
    assert!(
        error("[ppp]\npools = { a = [\"10.78.0.0/24\"], b = [\"10.78.0.5\"] }\n")
            .contains("ppp.pools.b[0]: \"10.78.0.5\" overlaps ppp.pools.a[0]")
    );
    assert_eq!(s.dynauth.as_ref().map(|d| d.0.port()), Some(3799));
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("CHAP-MD5") && w.contains("local"))
    );
    assert!(
        error("[auth]\nbackends = [\"ldap\"]\n")
            .contains("unknown backend \"ldap\"; valid: local, radius")
    );
    assert!(
        error("[log]\nformat = \"xml\"\n")
            .contains("log.format: unknown format \"xml\"; valid: text, json")
    );
    assert!(error("[log]\nlevel = \"roadgate=loud\"\n").starts_with("roadgate.toml: log.level: "));
    assert_eq!(
        check("[log]\nlevel = \"roadgate=debug,info\"\n")
            .unwrap()
            .log
            .level,
        "roadgate=debug,info"
    );
    let s = check("[l2tp]\nhello_interval = 0\nmax_tunnels = 10\nhost_name = \"gw\"\n").unwrap();
    assert_eq!(s.lns.hello_interval, Duration::ZERO);
    assert_eq!(s.lns.max_tunnels, 10);
    assert_eq!(s.lns.host_name, "gw");
    let s =
        check("[dataplane]\nidle_timeout = \"15m\"\nsession_timeout = 86400\nmss_clamp = false\n")
            .unwrap();
    assert_eq!(s.dataplane.idle_timeout, Some(Duration::from_secs(900)));
    assert_eq!(
        s.dataplane.session_timeout,
        Some(Duration::from_secs(86400))
    );
    assert!(!s.dataplane.mss_clamp);
}

#[test]
fn pool_entries() {
    for (entry, first, last) in [
        ("10.0.0.1-10.0.0.9", "10.0.0.1", "10.0.0.9"),
        (" 10.0.0.1 - 10.0.0.9 ", "10.0.0.1", "10.0.0.9"),
        ("10.0.0.0/24", "10.0.0.1", "10.0.0.254"),
        ("10.0.0.0/30", "10.0.0.1", "10.0.0.2"),
        ("10.0.0.0/31", "10.0.0.0", "10.0.0.1"),
        ("10.0.0.7/32", "10.0.0.7", "10.0.0.7"),
        ("10.0.0.7", "10.0.0.7", "10.0.0.7"),
    ] {
        assert_eq!(
            parse_pool_entry(entry),
            Ok((ip(first), ip(last))),
            "{entry}"
        );
    }
    for (entry, why) in [
        (
            "10.0.0.5/24",
            "has host bits set: did you mean 10.0.0.0/24?",
        ),
        ("10.0.0.0/33", "the prefix length must be 0 to 32"),
        ("10.0.0.9-10.0.0.1", "the first address is above the last"),
        ("10.0.0.1-x", "\"x\" is not an IPv4 address"),
    ] {
        let e = parse_pool_entry(entry).unwrap_err();
        assert!(e.contains(why), "{entry}: {e}");
    }
}

#[test]
fn durations() {
    let d = |s: &str| parse_duration(s).map(|d| d.as_secs());
    assert_eq!(d("0"), Ok(0));
    assert_eq!(d("90"), Ok(90));
    assert_eq!(d("30s"), Ok(30));
    assert_eq!(d("5m"), Ok(300));
    assert_eq!(d("1h"), Ok(3600));
    assert_eq!(d("2d"), Ok(172_800));
    assert_eq!(d("1h30m"), Ok(5400));
    assert_eq!(d(" 1m 30s "), Ok(90));
    assert!(d("").is_err());
    assert!(d("s").unwrap_err().contains("a number is missing"));
    assert!(d("1h30").unwrap_err().contains("30 has no unit"));
    assert!(d("1.5h").is_err());
    assert!(d("-5s").is_err());
    assert!(
        d("99999999999999999999s")
            .unwrap_err()
            .contains("too large")
    );
    assert!(d("999999999999999999d").unwrap_err().contains("too long"));
    for secs in [0, 1, 59, 60, 61, 3600, 5400, 86400, 90061] {
        let text = format_duration(Duration::from_secs(secs));
        assert_eq!(d(&text), Ok(secs), "{text}");
    }
    assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
}

#[test]
fn state_folder_and_sessions() {
    let dir = Scratch::new("state");
    let o = Overrides {
        state_dir: Some(dir.0.join("st")),
        ..Overrides::default()
    };
    let mut s = Settings::builtin(&o).unwrap();
    let generated = s.prepare_state().unwrap().expect("a new key");
    assert_eq!(generated.len(), 24);
    let key_file = dir.0.join("st").join(STATE_PSK_FILE);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&dir.0.join("st")), 0o700);
    let any: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(s.ike.psk.lookup(any), Some(generated.as_bytes()));
    // The next start reads the same key and shows nothing.
    let mut again = Settings::builtin(&o).unwrap();
    assert!(again.prepare_state().unwrap().is_none());
    assert_eq!(again.ike.psk.lookup(any), Some(generated.as_bytes()));
    fs::write(&key_file, "\n").unwrap();
    let mut empty = Settings::builtin(&o).unwrap();
    assert!(
        empty
            .prepare_state()
            .unwrap_err()
            .contains("the pre-shared key is empty")
    );

    // Static addresses go into the pool; one on the server's own address is refused.
    let users = UserStore::in_memory().unwrap();
    let opts = |a: &str| crate::aaa::local::UserOptions {
        static_ip: Some(Some(ip(a))),
        ..Default::default()
    };
    users
        .add("alice", "pw-alice-1", &opts("10.77.0.200"))
        .unwrap();
    let mut cfg = s.session_config(&users).unwrap();
    assert_eq!(cfg.pool.allocate("alice").unwrap(), ip("10.77.0.200"));
    assert_eq!(cfg.pool.allocate("bob").unwrap(), ip("10.77.0.10"));
    users
        .add("mallory", "pw-mallory-1", &opts("10.77.0.1"))
        .unwrap();
    assert!(
        s.session_config(&users)
            .unwrap_err()
            .contains("is the server's PPP address")
    );
}

#[test]
fn summary_names_the_essentials() {
    let s = check("[ppp]\ndns = [\"192.0.2.53\"]\n").unwrap();
    let text = s.summary();
    for want in [
        "config:         roadgate.toml",
        "listen:         0.0.0.0, :: IKE 500 NAT-T 4500 raw ESP on",
        "pool:           10.77.0.10-10.77.0.250 (241 addresses); server address 10.77.0.1",
        "authentication: local users; mschapv2, pap",
        "phase 1:        aes256, aes192, aes128 / sha1, sha256, sha384, sha512 / ecp384",
        "phase 2:        aes256gcm16, aes128gcm16, aes256, aes128 / sha1, sha256, sha384, sha512",
        "data plane:     TUN rg0, MTU 1400, MSS clamping on",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
}

#[test]
fn web_section() {
    let d = check("").unwrap();
    assert!(d.web.enabled);
    assert_eq!(d.web.bind, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(d.web.metrics, crate::io::web::MetricsMode::Off);
    assert!(d.certificates.require_user_match);
    let w = check(
        "[web]\nbind = \"192.0.2.1:9443\"\nmetrics = \"token\"\nmetrics_token_file = \"tok\"\n\
         metrics_bind = \"127.0.0.1:9469\"\nshow_psk = true\n\
         [certificates]\ncrl_url = \"http://192.0.2.1/crl.der\"\nrequire_user_match = false\n\
         [web.x]\n",
    );
    assert!(w.unwrap_err().to_string().contains("unknown field"));
    let w = check(
        "[web]\nbind = \"192.0.2.1:9443\"\nmetrics = \"token\"\nmetrics_token_file = \"tok\"\n\
         metrics_bind = \"127.0.0.1:9469\"\nshow_psk = true\ncrl_bind = \"192.0.2.1:80\"\n\
         [certificates]\ncrl_url = \"http://192.0.2.1/crl.der\"\nrequire_user_match = false\n",
    )
    .unwrap();
    assert_eq!(w.web.bind, "192.0.2.1:9443".parse().unwrap());
    assert_eq!(
        w.web.metrics,
        crate::io::web::MetricsMode::Token(PathBuf::from("tok"))
    );
    assert_eq!(w.web.metrics_bind, Some("127.0.0.1:9469".parse().unwrap()));
    assert_eq!(w.web.crl_bind, Some("192.0.2.1:80".parse().unwrap()));
    assert!(w.web.show_psk);
    assert!(!w.certificates.require_user_match);
    for (text, words) in [
        (
            "[web]\nbind = \"8443\"",
            "web.bind: \"8443\" is not an address with a port",
        ),
        (
            "[web]\nmetrics = \"token\"",
            "web.metrics_token_file: metrics = \"token\" needs",
        ),
        (
            "[web]\nmetrics = \"public\"",
            "web.metrics: \"public\": use",
        ),
        (
            "[web]\nmetrics_token_file = \"t\"",
            "web.metrics_token_file: only used with",
        ),
        (
            "[web]\ncert = \"c.pem\"",
            "web.cert: cert and key go together",
        ),
        (
            "[web]\ncrl_bind = \"192.0.2.1:80\"",
            "web.crl_bind: serving the CRL needs certificates.crl_url",
        ),
    ] {
        let e = error(text);
        assert!(e.contains(words), "{text}: {e}");
    }
}
