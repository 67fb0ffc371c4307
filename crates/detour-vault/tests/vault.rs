//! The vault's public behaviour: sealing, wrapping, rotation, settings and the dev key ring.

// Helpers outside `#[test]` functions are test code too; clippy.toml's test allowance misses them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use detour_vault::{
    DEV_KEK_FILE, DEV_KEK_ID, DataKey, Kek, KekSettings, KeyRing, SEAL_OVERHEAD, Secret, SecretString,
    VaultError, VaultSettings, VaultSettingsProblem, WrappedKey, generate_kek_base64, open, seal,
};

const AAD: &[u8] = b"passenger:7:phone";
const PHONE: &[u8] = b"+31 6 1234 5678";

fn ring(primary: &Kek, others: &[&Kek]) -> KeyRing {
    KeyRing::new(primary.clone(), others.iter().map(|k| (*k).clone())).unwrap()
}

fn kek(id: &str, byte: u8) -> Kek {
    Kek::new(id, [byte; 32]).unwrap()
}

// ---- sealing fields ----

#[test]
fn seal_then_open_round_trips() {
    let dek = DataKey::generate().unwrap();
    for plaintext in [&b""[..], PHONE, &[0u8; 5000][..]] {
        let sealed = seal(&dek, plaintext, AAD).unwrap();
        assert_eq!(sealed.len(), plaintext.len() + SEAL_OVERHEAD);
        assert_eq!(sealed[0], 1, "format version");
        assert_eq!(open(&dek, &sealed, AAD).unwrap(), plaintext);
    }
}

#[test]
fn every_altered_byte_fails_to_decrypt() {
    let dek = DataKey::generate().unwrap();
    let sealed = seal(&dek, PHONE, AAD).unwrap();
    // Byte 0 is the version, which is Malformed instead; every other byte is authenticated.
    for i in 1..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[i] ^= 0x01;
        assert!(matches!(open(&dek, &tampered, AAD), Err(VaultError::Decrypt)), "byte {i}");
    }
}

#[test]
fn wrong_aad_or_wrong_key_fails_to_decrypt() {
    let dek = DataKey::generate().unwrap();
    let sealed = seal(&dek, PHONE, AAD).unwrap();
    assert!(matches!(open(&dek, &sealed, b"passenger:8:phone"), Err(VaultError::Decrypt)));
    assert!(matches!(open(&dek, &sealed, b""), Err(VaultError::Decrypt)));
    let other = DataKey::generate().unwrap();
    assert!(matches!(open(&other, &sealed, AAD), Err(VaultError::Decrypt)));
}

#[test]
fn a_bad_version_byte_is_malformed() {
    let dek = DataKey::generate().unwrap();
    let mut sealed = seal(&dek, PHONE, AAD).unwrap();
    for version in [0u8, 2, 0xFF] {
        sealed[0] = version;
        let err = open(&dek, &sealed, AAD).unwrap_err();
        assert!(matches!(err, VaultError::Malformed { .. }), "{version}: {err:?}");
        assert!(err.to_string().contains("version"), "{err}");
    }
}

#[test]
fn every_prefix_of_a_sealed_value_is_refused_without_panicking() {
    let dek = DataKey::generate().unwrap();
    let sealed = seal(&dek, PHONE, AAD).unwrap();
    assert!(sealed.len() > 40);
    for len in 0..=40 {
        let err = open(&dek, &sealed[..len], AAD).unwrap_err();
        if len < SEAL_OVERHEAD {
            assert!(matches!(err, VaultError::Malformed { .. }), "{len}: {err:?}");
        } else {
            // Long enough to parse, but the tag is then taken from the ciphertext.
            assert!(matches!(err, VaultError::Decrypt), "{len}: {err:?}");
        }
    }
    for len in 1..SEAL_OVERHEAD {
        let err = open(&dek, &sealed[..len], AAD).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{len}: {err}");
    }
}

#[test]
fn arbitrary_inputs_never_panic() {
    let dek = DataKey::generate().unwrap();
    for len in 0..64 {
        for fill in [0u8, 1, 0xFF] {
            let input = vec![fill; len];
            assert!(open(&dek, &input, AAD).is_err());
            assert!(WrappedKey::from_bytes(&input).is_err());
        }
    }
}

#[test]
fn sealing_the_same_plaintext_twice_differs() {
    let dek = DataKey::generate().unwrap();
    let a = seal(&dek, PHONE, AAD).unwrap();
    let b = seal(&dek, PHONE, AAD).unwrap();
    assert_ne!(a, b);
    assert_ne!(a[1..13], b[1..13], "fresh nonce");
    assert_eq!(open(&dek, &a, AAD).unwrap(), open(&dek, &b, AAD).unwrap());
}

// ---- wrapping data keys ----

#[test]
fn wrap_then_unwrap_gives_the_same_data_key() {
    let ring = ring(&kek("kek-1", 1), &[]);
    let dek = DataKey::generate().unwrap();
    let sealed = seal(&dek, PHONE, AAD).unwrap();
    let wrapped = ring.wrap(&dek, b"tenant-a").unwrap();
    assert_eq!(wrapped.kek_id, "kek-1");
    assert_eq!(wrapped.ciphertext.len(), 32 + SEAL_OVERHEAD);
    assert!(!ring.needs_rewrap(&wrapped));
    let unwrapped = ring.unwrap(&wrapped, b"tenant-a").unwrap();
    assert_eq!(open(&unwrapped, &sealed, AAD).unwrap(), PHONE);
}

#[test]
fn a_wrapped_key_does_not_unwrap_in_another_context() {
    let ring = ring(&kek("kek-1", 1), &[]);
    let wrapped = ring.wrap(&DataKey::generate().unwrap(), b"tenant-a").unwrap();
    assert!(matches!(ring.unwrap(&wrapped, b"tenant-b"), Err(VaultError::Decrypt)));
    assert!(matches!(ring.unwrap(&wrapped, b""), Err(VaultError::Decrypt)));
}

#[test]
fn a_wrapped_key_relabelled_with_another_kek_id_fails() {
    // Both KEKs share key bytes, so only the id in the associated data tells them apart.
    let ring = ring(&kek("kek-1", 1), &[&kek("kek-2", 1)]);
    let mut wrapped = ring.wrap(&DataKey::generate().unwrap(), b"t").unwrap();
    wrapped.kek_id = "kek-2".into();
    assert!(matches!(ring.unwrap(&wrapped, b"t"), Err(VaultError::Decrypt)));
}

#[test]
fn kek_rotation_keeps_old_data_keys_readable_until_rewrapped() {
    let k1 = kek("k1", 1);
    let k2 = kek("k2", 2);
    let a = ring(&k1, &[]);
    let b = ring(&k2, &[&k1]);
    let c = ring(&k2, &[]);

    let dek = DataKey::generate().unwrap();
    let sealed = seal(&dek, PHONE, AAD).unwrap();
    let old = a.wrap(&dek, b"tenant-a").unwrap();

    // Mid-rotation: the new primary is configured, the old KEK is still listed.
    assert_eq!(b.primary_id(), "k2");
    assert!(b.needs_rewrap(&old));
    assert_eq!(open(&b.unwrap(&old, b"tenant-a").unwrap(), &sealed, AAD).unwrap(), PHONE);

    let new = b.rewrap(&old, b"tenant-a").unwrap();
    assert_eq!(new.kek_id, "k2");
    assert!(!b.needs_rewrap(&new));
    assert!(!c.needs_rewrap(&new));

    // After the rewrap pass the old KEK is removed; the data itself was never re-encrypted.
    assert_eq!(open(&c.unwrap(&new, b"tenant-a").unwrap(), &sealed, AAD).unwrap(), PHONE);
    let err = c.unwrap(&old, b"tenant-a").unwrap_err();
    assert!(matches!(&err, VaultError::UnknownKek { kek_id } if kek_id == "k1"), "{err:?}");
    assert!(err.to_string().contains("\"k1\""), "{err}");
    assert!(c.needs_rewrap(&old));
}

#[test]
fn rewrapping_keeps_the_context_binding() {
    let k1 = kek("k1", 1);
    let b = ring(&kek("k2", 2), &[&k1]);
    let old = ring(&k1, &[]).wrap(&DataKey::generate().unwrap(), b"tenant-a").unwrap();
    assert!(matches!(b.rewrap(&old, b"tenant-b"), Err(VaultError::Decrypt)));
    let new = b.rewrap(&old, b"tenant-a").unwrap();
    assert!(matches!(b.unwrap(&new, b"tenant-b"), Err(VaultError::Decrypt)));
}

#[test]
fn a_key_ring_refuses_duplicate_ids() {
    let err = KeyRing::new(kek("k1", 1), [kek("k2", 2), kek("k1", 3)]).unwrap_err();
    assert!(matches!(&err, VaultError::DuplicateKek { kek_id } if kek_id == "k1"), "{err:?}");
    let ring = KeyRing::new(kek("k1", 1), [kek("k2", 2)]).unwrap();
    assert_eq!(ring.kek_ids().collect::<Vec<_>>(), ["k1", "k2"]);
    assert!(ring.contains("k2"));
    assert!(!ring.contains("k3"));
}

#[test]
fn kek_ids_are_checked() {
    for id in ["kek-2026-11", "a", "A.b_c-9", &"x".repeat(64)] {
        assert!(Kek::new(id, [0; 32]).is_ok(), "{id}");
    }
    for id in ["", "kek 1", "kék", "kek/1", &"x".repeat(65)] {
        assert!(matches!(Kek::new(id, [0; 32]), Err(VaultError::InvalidKekId { .. })), "{id}");
    }
}

#[test]
fn wrapped_keys_round_trip_through_bytes() {
    let ring = ring(&kek("kek-2026-11", 1), &[]);
    let wrapped = ring.wrap(&DataKey::generate().unwrap(), b"t").unwrap();
    let bytes = wrapped.to_bytes();
    assert_eq!(WrappedKey::from_bytes(&bytes).unwrap(), wrapped);
    for len in 0..2 + "kek-2026-11".len() {
        assert!(matches!(WrappedKey::from_bytes(&bytes[..len]), Err(VaultError::Malformed { .. })), "{len}");
    }
    let mut bad_version = bytes.clone();
    bad_version[0] = 9;
    assert!(matches!(WrappedKey::from_bytes(&bad_version), Err(VaultError::Malformed { .. })));
    // Cut inside the ciphertext: parses, then fails to unwrap.
    let cut = WrappedKey::from_bytes(&bytes[..bytes.len() - 1]).unwrap();
    assert!(ring.unwrap(&cut, b"t").is_err());
}

// ---- keeping secrets out of output ----

#[test]
fn debug_output_shows_no_secret_or_key() {
    let key = [0x5Au8; 32];
    let key_b64 = STANDARD.encode(key);
    let kek = Kek::new("kek-1", key).unwrap();
    let ring = KeyRing::new(kek.clone(), []).unwrap();
    let secret: SecretString = Secret::new("passport NX1234567".to_owned());
    let settings =
        VaultSettings { keks: vec![KekSettings::new("kek-1", key_b64.clone())], primary: "kek-1".into() };
    let wrapped = ring.wrap(&DataKey::generate().unwrap(), b"t").unwrap();

    let outputs = [
        format!("{secret:?}"),
        format!("{secret:#?}"),
        format!("{:?}", Some(&secret)),
        format!("{:?}", DataKey::generate().unwrap()),
        format!("{kek:?} {kek:#?}"),
        format!("{ring:?} {ring:#?}"),
        format!("{settings:?} {settings:#?}"),
        format!("{wrapped:?}"),
    ];
    assert_eq!(outputs[0], "Secret(<redacted>)");
    let key_decimal = key.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
    for output in &outputs {
        for needle in
            ["NX1234567", "passport", &key_b64, &key_b64[..8], &key_decimal, "5a5a", "5A5A", "90, 90"]
        {
            assert!(!output.contains(needle), "{needle:?} in {output}");
        }
    }
    assert!(outputs[5].contains("kek-1"), "ids are shown: {}", outputs[5]);
    assert!(outputs[6].contains("kek-1") && outputs[6].contains("<redacted>"), "{}", outputs[6]);
}

#[test]
fn a_secret_deserialises_transparently_and_exposes_deliberately() {
    #[derive(serde::Deserialize, Debug)]
    struct Passenger {
        name: SecretString,
        seat: String,
    }
    let p: Passenger = serde_json::from_str(r#"{"name": "Ada Lovelace", "seat": "12C"}"#).unwrap();
    assert_eq!(p.name.expose(), "Ada Lovelace");
    assert!(!format!("{p:?}").contains("Ada"));
    assert!(format!("{p:?}").contains("12C"));
    assert_eq!(p.seat, "12C");
    let copy = p.name.clone();
    assert_eq!(copy, p.name);
    assert_ne!(copy, Secret::from("Grace Hopper".to_owned()));
    assert_eq!(copy.into_inner(), "Ada Lovelace");
    let bytes: Secret<Vec<u8>> = Secret::new(vec![1, 2, 3]);
    assert_eq!(bytes.expose(), &[1, 2, 3]);
}

// ---- settings ----

fn settings_from_toml(text: &str) -> VaultSettings {
    toml::from_str(text).unwrap()
}

fn valid_key() -> String {
    generate_kek_base64().unwrap()
}

#[test]
fn settings_build_a_key_ring() {
    let (k1, k2) = (valid_key(), valid_key());
    let settings = settings_from_toml(&format!(
        "primary = \"kek-2026-11\"\n\
         [[keks]]\nid = \"kek-2026-05\"\nkey = \"{k1}\"\n\
         [[keks]]\nid = \"kek-2026-11\"\nkey = \"{k2}\"\n"
    ));
    let ring = settings.key_ring().unwrap();
    assert_eq!(ring.primary_id(), "kek-2026-11");
    assert_eq!(ring.kek_ids().collect::<Vec<_>>(), ["kek-2026-11", "kek-2026-05"]);

    // The same key bytes under the same id unwrap what another ring built from them wrapped.
    let old =
        VaultSettings { keks: vec![KekSettings::new("kek-2026-05", k1)], primary: "kek-2026-05".into() }
            .key_ring()
            .unwrap();
    let wrapped = old.wrap(&DataKey::generate().unwrap(), b"t").unwrap();
    assert!(ring.unwrap(&wrapped, b"t").is_ok());
}

#[test]
fn an_empty_section_deserialises_and_is_refused_by_name() {
    let settings = settings_from_toml("");
    assert!(settings.is_empty());
    let err = settings.key_ring().unwrap_err();
    assert_eq!(err.setting, "keks");
    assert_eq!(err.problem, VaultSettingsProblem::NoKeks);
    assert!(err.to_string().starts_with("keks: "), "{err}");
}

#[test]
fn unknown_settings_are_refused() {
    assert!(toml::from_str::<VaultSettings>("primay = \"k\"").is_err());
    assert!(toml::from_str::<VaultSettings>("[[keks]]\nid = \"k\"\nkey = \"x\"\nkid = \"y\"").is_err());
}

#[test]
fn each_bad_setting_is_named() {
    let good = valid_key();
    let short = STANDARD.encode([7u8; 16]);
    let kek = |id: &str, key: &str| KekSettings::new(id, key);
    let cases: Vec<(VaultSettings, &str, VaultSettingsProblem)> = vec![
        (VaultSettings { keks: vec![], primary: "k1".into() }, "keks", VaultSettingsProblem::NoKeks),
        (
            VaultSettings { keks: vec![kek("k1", &good), kek("", &good)], primary: "k1".into() },
            "keks[1].id",
            VaultSettingsProblem::EmptyId,
        ),
        (
            VaultSettings { keks: vec![kek("k 1", &good)], primary: "k 1".into() },
            "keks[0].id",
            VaultSettingsProblem::InvalidId { id: "k 1".into() },
        ),
        (
            VaultSettings {
                keks: vec![kek("k1", &good), kek("k2", &good), kek("k1", &good)],
                primary: "k1".into(),
            },
            "keks[2].id",
            VaultSettingsProblem::DuplicateId { id: "k1".into() },
        ),
        (
            VaultSettings { keks: vec![kek("k1", &good), kek("k2", "not base64!")], primary: "k1".into() },
            "keks[1].key",
            VaultSettingsProblem::KeyNotBase64,
        ),
        (
            VaultSettings { keks: vec![kek("k1", &good), kek("k2", &short)], primary: "k1".into() },
            "keks[1].key",
            VaultSettingsProblem::KeyWrongLength { len: 16 },
        ),
        (
            VaultSettings { keks: vec![kek("k1", "")], primary: "k1".into() },
            "keks[0].key",
            VaultSettingsProblem::EmptyKey,
        ),
        (
            VaultSettings { keks: vec![kek("k1", &good)], primary: String::new() },
            "primary",
            VaultSettingsProblem::NoPrimary,
        ),
        (
            VaultSettings { keks: vec![kek("k1", &good)], primary: "k2".into() },
            "primary",
            VaultSettingsProblem::UnknownPrimary { id: "k2".into() },
        ),
    ];
    for (settings, setting, problem) in cases {
        let err = settings.key_ring().unwrap_err();
        assert_eq!((err.setting.as_str(), &err.problem), (setting, &problem), "{settings:?}");
        let message = err.to_string();
        assert!(message.starts_with(&format!("{setting}: ")), "{message}");
        assert!(!message.contains(&good) && !message.contains(&short), "{message}");
    }
}

#[test]
fn a_key_with_surrounding_whitespace_is_accepted() {
    let settings = VaultSettings {
        keks: vec![KekSettings::new("k1", format!("{}\n", valid_key()))],
        primary: "k1".into(),
    };
    assert!(settings.key_ring().is_ok());
}

#[test]
fn generated_keks_are_32_bytes_of_standard_base64_and_differ() {
    let a = generate_kek_base64().unwrap();
    assert_eq!(STANDARD.decode(&a).unwrap().len(), 32);
    assert_ne!(a, generate_kek_base64().unwrap());
}

// ---- development key ring ----

#[test]
fn the_dev_key_ring_persists_across_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("data");
    let first = KeyRing::load_or_create_dev(&dir).unwrap();
    assert_eq!(first.primary_id(), DEV_KEK_ID);
    let dek = DataKey::generate().unwrap();
    let wrapped = first.wrap(&dek, b"tenant-a").unwrap();
    let sealed = seal(&dek, PHONE, AAD).unwrap();

    let second = KeyRing::load_or_create_dev(&dir).unwrap();
    let dek = second.unwrap(&wrapped, b"tenant-a").unwrap();
    assert_eq!(open(&dek, &sealed, AAD).unwrap(), PHONE);

    let file = dir.join(DEV_KEK_FILE);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(json["id"], DEV_KEK_ID);
    assert_eq!(STANDARD.decode(json["key"].as_str().unwrap()).unwrap().len(), 32);
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o077, 0);
    }
}

#[cfg(unix)]
#[test]
fn a_dev_key_file_readable_by_others_is_made_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    KeyRing::load_or_create_dev(tmp.path()).unwrap();
    let file = tmp.path().join(DEV_KEK_FILE);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    KeyRing::load_or_create_dev(tmp.path()).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_broken_dev_key_file_is_reported_without_its_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join(DEV_KEK_FILE);

    std::fs::write(&file, "{\"id\": \"dev-kek-1\", \"key\": \"c2VjcmV0\"").unwrap();
    let err = KeyRing::load_or_create_dev(tmp.path()).unwrap_err();
    assert!(matches!(err, VaultError::DevKekFormat { .. }), "{err:?}");
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");

    std::fs::write(&file, "{\"id\": \"dev-kek-1\", \"key\": \"c2VjcmV0\"}").unwrap();
    let err = KeyRing::load_or_create_dev(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, VaultError::DevKek { source, .. } if source.setting == "key"
            && source.problem == VaultSettingsProblem::KeyWrongLength { len: 6 }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    assert!(err.to_string().contains(DEV_KEK_FILE), "{err}");
}

#[test]
fn concurrent_dev_starts_agree_on_one_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let rings: Vec<KeyRing> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..8).map(|_| s.spawn(|| KeyRing::load_or_create_dev(&dir).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let dek = DataKey::generate().unwrap();
    let wrapped = rings[0].wrap(&dek, b"t").unwrap();
    for ring in &rings {
        assert!(ring.unwrap(&wrapped, b"t").is_ok());
    }
}
