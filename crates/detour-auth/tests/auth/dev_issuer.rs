//! The dev issuer's key: created once, private, reused.

use std::time::Duration;

use detour_auth::{AuthSettings, DEV_KEY_FILE, DevIssuer, DevIssuerError, Principal, Role, Verifier};

#[tokio::test]
async fn the_key_persists_across_load_or_create() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("nested/keys");
    let first = DevIssuer::load_or_create(&keys).unwrap();
    assert_eq!(first.key_path(), keys.join(DEV_KEY_FILE));
    let token = first.mint("dev-1", &[Role::Supervisor], Duration::from_secs(60)).unwrap();

    // "After a restart": a second load reads the same key.
    let second = DevIssuer::load_or_create(&keys).unwrap();
    assert_eq!(second.kid(), first.kid());
    assert_eq!(second.jwks(), first.jwks());
    let verifier =
        Verifier::new(AuthSettings { dev_issuer: Some(second), ..AuthSettings::default() }).unwrap();
    assert_eq!(
        verifier.verify(&token).await.unwrap(),
        Principal::user("dev-1", [Role::Supervisor], "detour-dev")
    );

    // A different directory is a different key.
    let elsewhere = DevIssuer::load_or_create(dir.path().join("other")).unwrap();
    assert_ne!(elsewhere.kid(), first.kid());
}

#[test]
fn threads_creating_the_key_together_all_get_the_one_key() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let barrier = std::sync::Barrier::new(8);
        let kids: Vec<String> = std::thread::scope(|s| {
            let started: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        DevIssuer::load_or_create(&keys).map(|d| d.kid().to_owned())
                    })
                })
                .collect();
            started.into_iter().map(|t| t.join().unwrap().unwrap()).collect()
        });
        assert!(kids.windows(2).all(|w| w[0] == w[1]), "{kids:?}");
        assert_eq!(std::fs::read_dir(&keys).unwrap().count(), 1, "no temporary file left");
    }
}

#[cfg(unix)]
#[test]
fn the_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let dev = DevIssuer::load_or_create(&keys).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dev.key_path()), 0o600);
    assert_eq!(mode(&keys), 0o700);
    let pem = std::fs::read_to_string(dev.key_path()).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    // Nothing but the key is left in the directory.
    assert_eq!(std::fs::read_dir(&keys).unwrap().count(), 1);

    // Loosened by hand: made private again on the next load.
    std::fs::set_permissions(dev.key_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = DevIssuer::load_or_create(&keys).unwrap();
    assert_eq!(again.kid(), dev.kid());
    assert_eq!(mode(dev.key_path()), 0o600);
}

#[test]
fn a_damaged_key_file_is_reported_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DEV_KEY_FILE), "not a key").unwrap();
    let err = DevIssuer::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, DevIssuerError::BadKey { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join(DEV_KEY_FILE)).unwrap(), "not a key");
}

#[test]
fn debug_output_has_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevIssuer::load_or_create(dir.path()).unwrap();
    let pem = std::fs::read_to_string(dev.key_path()).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let debug = format!("{dev:?}");
    assert!(debug.contains(dev.kid()));
    assert!(!debug.contains(&body[..20]), "{debug}");
    // The published set holds the public key only.
    let jwks = serde_json::to_value(dev.jwks()).unwrap();
    assert!(jwks["keys"][0].get("d").is_none(), "{jwks}");
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
}
