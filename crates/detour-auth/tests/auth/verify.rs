//! Token verification against a real JWKS endpoint.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use detour_auth::{AuthError, AuthSettings, Caller, DevIssuer, IssuerSettings, Principal, Role, Verifier};

use crate::support::*;

#[tokio::test]
async fn rs256_and_es256_tokens_are_accepted() {
    let rsa = rsa_key(0, "rsa-1");
    let ec = ec_key("ec-1");
    let server = JwksServer::start(&[&rsa, &ec]).await;
    let verifier = verifier(&server);

    for key in [&rsa, &ec] {
        let token = sign(key, &user_claims("agent-7", &[Role::Agent, Role::Finance]));
        let principal = verifier.verify(&token).await.unwrap_or_else(|e| panic!("{:?}: {e}", key.alg));
        assert_eq!(principal, Principal::user("agent-7", [Role::Agent, Role::Finance], ISSUER));
        // Only identifiers are kept: nothing of the token's e-mail or name claims.
        let debug = format!("{principal:?}");
        assert!(!debug.contains("example.com") && !debug.contains("Some One"), "{debug}");
    }
    assert_eq!(server.fetches(), 1, "the key set is fetched once and cached");
}

#[tokio::test]
async fn bad_tokens_are_refused_for_the_right_reason() {
    let rsa = rsa_key(0, "rsa-1");
    let ec = ec_key("ec-1");
    let server = JwksServer::start(&[&rsa, &ec]).await;
    let verifier = verifier(&server);
    let ok = user_claims("u-1", &[Role::Admin]);
    let with = |changes: Value| {
        let mut claims = ok.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    // Sanity: the unchanged claims pass with both keys, so each refusal below is for its reason.
    verifier.verify(&sign(&rsa, &ok)).await.unwrap();
    verifier.verify(&sign(&ec, &ok)).await.unwrap();

    let valid_ec = sign(&ec, &ok);
    let mut parts = valid_ec.split('.');
    let (ec_header, ec_signature) = (parts.next().unwrap(), parts.nth(1).unwrap());
    let admin_everywhere = with(json!({"sub": "intruder", "roles": ["admin"]}));
    let tampered = format!("{ec_header}.{}.{ec_signature}", b64(admin_everywhere.to_string().as_bytes()));

    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("rsa-1".into());
    // The classic confusion: HMAC keyed with the issuer's public key material.
    let public_n = rsa.jwk["n"].as_str().unwrap().as_bytes().to_vec();
    let hs256 = jsonwebtoken::encode(&hs_header, &ok, &EncodingKey::from_secret(&public_n)).unwrap();

    let mut wrong_kid_alg = Header::new(Algorithm::ES256);
    wrong_kid_alg.kid = Some("rsa-1".into());
    let mut no_kid = Header::new(Algorithm::ES256);
    no_kid.kid = Some("never-published".into());

    let cases: Vec<(&str, String, AuthError)> = vec![
        ("expired", sign(&ec, &with(json!({"exp": now() - 120}))), AuthError::Expired),
        ("expired RS256", sign(&rsa, &with(json!({"exp": now() - 120}))), AuthError::Expired),
        ("not yet valid", sign(&ec, &with(json!({"nbf": now() + 120}))), AuthError::NotYetValid),
        ("wrong audience", sign(&ec, &with(json!({"aud": "someone-else"}))), AuthError::WrongAudience),
        ("wrong issuer", sign(&ec, &with(json!({"iss": "https://evil.test"}))), AuthError::WrongIssuer),
        (
            "alg none",
            raw_token(&json!({"alg": "none", "typ": "JWT"}), &ok, ""),
            AuthError::UnsupportedAlgorithm("none".into()),
        ),
        (
            "alg none with kid",
            raw_token(&json!({"alg": "none", "kid": "ec-1"}), &ok, ec_signature),
            AuthError::UnsupportedAlgorithm("none".into()),
        ),
        ("HS256", hs256, AuthError::UnsupportedAlgorithm("HS256".into())),
        (
            "RS512",
            raw_token(&json!({"alg": "RS512", "kid": "rsa-1"}), &ok, "c2ln"),
            AuthError::UnsupportedAlgorithm("RS512".into()),
        ),
        ("tampered payload", tampered, AuthError::BadSignature),
        (
            "signature of another token",
            format!("{}.{}", &valid_ec[..valid_ec.rfind('.').unwrap()], {
                let other = sign(&ec, &with(json!({"sub": "u-2"})));
                other.rsplit('.').next().unwrap().to_owned()
            }),
            AuthError::BadSignature,
        ),
        ("unknown kid", sign_with(&no_kid, &ec, &ok), AuthError::UnknownKey),
        (
            "alg does not match the kid's key",
            sign_with(&wrong_kid_alg, &ec, &ok),
            AuthError::AlgorithmMismatch,
        ),
        ("missing exp", sign(&ec, &with(json!({"exp": null}))), AuthError::Malformed("")),
        ("missing aud", sign(&ec, &with(json!({"aud": null}))), AuthError::Malformed("")),
        ("missing sub", sign(&ec, &with(json!({"sub": null}))), AuthError::Malformed("")),
        ("not a JWS", "not-a-token".into(), AuthError::Malformed("")),
        ("four parts", format!("{valid_ec}.x"), AuthError::Malformed("")),
        ("oversized", "a".repeat(10_000), AuthError::Malformed("")),
    ];
    for (name, token, expected) in cases {
        let err = verifier.verify(&token).await.expect_err(name);
        match expected {
            AuthError::Malformed(_) => assert!(matches!(err, AuthError::Malformed(_)), "{name}: {err:?}"),
            expected => assert_eq!(err, expected, "{name}"),
        }
        // The token never shows up in what is reported.
        let said = format!("{err} {err:?}");
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!said.contains(part), "{name}: {said}");
        }
    }
}

#[tokio::test]
async fn keys_of_one_issuer_do_not_verify_another() {
    let ours = ec_key("ec-1");
    let theirs = ec_key("ec-2");
    let server = JwksServer::start(&[&ours]).await;
    let other = JwksServer::start(&[&theirs]).await;
    let verifier = Verifier::new(AuthSettings {
        issuers: vec![
            IssuerSettings::new(ISSUER, AUDIENCE, &server.url),
            IssuerSettings::new("https://partners.test", AUDIENCE, &other.url),
        ],
        ..AuthSettings::default()
    })
    .unwrap();
    // Signed by the partner issuer's key, claiming to be from ours.
    let forged = sign(&theirs, &user_claims("u-1", &[Role::Admin]));
    assert_eq!(verifier.verify(&forged).await, Err(AuthError::UnknownKey));
    // And ours claiming to be the partner issuer.
    let mut claims = user_claims("u-1", &[Role::Partner]);
    claims["iss"] = json!("https://partners.test");
    assert_eq!(verifier.verify(&sign(&ours, &claims)).await, Err(AuthError::UnknownKey));
    assert_eq!(verifier.verify(&sign(&theirs, &claims)).await.unwrap().issuer, "https://partners.test");
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_restart_and_refetches_are_rate_limited() {
    let a = ec_key("key-a");
    let b = rsa_key(1, "key-b");
    let server = JwksServer::start(&[&a]).await;
    let verifier = verifier(&server); // refetch interval 1 s
    let claims = user_claims("u-1", &[Role::Agent]);
    let (token_a, token_b) = (sign(&a, &claims), sign(&b, &claims));

    verifier.verify(&token_a).await.unwrap();
    assert_eq!(server.fetches(), 1);

    // The issuer rotates to B.
    server.serve(&[&b]);
    verifier.verify(&token_a).await.unwrap(); // cached: A is still trusted until the set is re-read
    assert_eq!(server.fetches(), 1);
    // Within the interval of the last fetch, an unknown kid does not cause another one.
    assert_eq!(verifier.verify(&token_b).await, Err(AuthError::UnknownKey));
    assert_eq!(server.fetches(), 1, "rate limit");

    tokio::time::sleep(PAST_INTERVAL).await;
    let principal = verifier.verify(&token_b).await.unwrap();
    assert_eq!(principal.caller, Caller::User { subject: "u-1".into(), roles: [Role::Agent].into() });
    assert_eq!(server.fetches(), 2, "the unknown kid caused exactly one refetch");
    // A is gone from the issuer, and so from us.
    assert_eq!(verifier.verify(&token_a).await, Err(AuthError::UnknownKey));

    // A burst of made-up kids does not reach the issuer.
    let forged: Vec<String> = (0..20)
        .map(|i| {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(format!("made-up-{i}"));
            sign_with(&header, &a, &claims)
        })
        .collect();
    // Polled concurrently: every call meets the same per-issuer fetch lock and rate limit.
    let results = futures::future::join_all(forged.iter().map(|t| verifier.verify(t))).await;
    assert!(results.iter().all(|r| *r == Err(AuthError::UnknownKey)));
    assert_eq!(server.fetches(), 2, "rate limit holds under a burst");
    verifier.verify(&token_b).await.unwrap();

    // The limit is per interval, not forever.
    tokio::time::sleep(PAST_INTERVAL).await;
    assert_eq!(verifier.verify(&forged[0]).await, Err(AuthError::UnknownKey));
    assert_eq!(server.fetches(), 3);
}

#[tokio::test]
async fn an_expired_key_set_is_re_read() {
    let a = ec_key("key-a");
    let b = ec_key("key-b");
    let server = JwksServer::start(&[&a]).await;
    let verifier = Verifier::new(AuthSettings { jwks_ttl_secs: 1, ..settings(&server) }).unwrap();
    let claims = user_claims("u-1", &[Role::Agent]);

    verifier.verify(&sign(&a, &claims)).await.unwrap();
    server.serve(&[&b]);
    tokio::time::sleep(PAST_INTERVAL).await;
    // The set is older than its TTL: re-read before use, so the withdrawn key A fails.
    assert_eq!(verifier.verify(&sign(&a, &claims)).await, Err(AuthError::UnknownKey));
    assert_eq!(server.fetches(), 2);
    verifier.verify(&sign(&b, &claims)).await.unwrap();
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn an_unreachable_issuer_is_unavailable_and_stale_keys_keep_working() {
    let a = ec_key("key-a");
    let server = JwksServer::start(&[&a]).await;
    server.fail();
    let verifier = Verifier::new(AuthSettings { jwks_ttl_secs: 1, ..settings(&server) }).unwrap();
    let token = sign(&a, &user_claims("u-1", &[Role::Agent]));

    let unavailable = AuthError::KeysUnavailable { issuer: ISSUER.into() };
    assert_eq!(verifier.verify(&token).await, Err(unavailable.clone()));
    assert_eq!(verifier.fetch_keys().await, Err(unavailable.clone()));
    assert_eq!(verifier.verify(&token).await, Err(unavailable));
    assert_eq!(server.fetches(), 1, "failed fetches are rate-limited too");

    server.serve(&[&a]);
    tokio::time::sleep(PAST_INTERVAL).await;
    verifier.fetch_keys().await.unwrap();
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.fetches(), 2);

    // The issuer goes down after the set expired: the last good set is still used.
    server.fail();
    tokio::time::sleep(PAST_INTERVAL).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.fetches(), 3);
}

#[tokio::test]
async fn unreachable_jwks_url() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let verifier = Verifier::new(AuthSettings {
        issuers: vec![IssuerSettings::new(ISSUER, AUDIENCE, url)],
        ..AuthSettings::default()
    })
    .unwrap();
    let token = sign(&ec_key("k"), &user_claims("u-1", &[Role::Agent]));
    assert_eq!(verifier.verify(&token).await, Err(AuthError::KeysUnavailable { issuer: ISSUER.into() }));
}

#[tokio::test]
async fn service_tokens_become_service_callers() {
    let key = ec_key("k");
    let server = JwksServer::start(&[&key]).await;
    let verifier = verifier(&server);
    let base = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60, "sub": "client-gateway"});
    let with = |extra: Value| {
        let mut claims = base.clone();
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        sign(&key, &claims)
    };
    let p = verifier.verify(&with(json!({"svc": "partner-gateway"}))).await.unwrap();
    assert_eq!(p.caller, Caller::Service { name: "partner-gateway".into(), on_behalf_of: None });
    let p = verifier.verify(&with(json!({"svc": "portal", "on_behalf_of": "traveler-9"}))).await.unwrap();
    assert_eq!(p.caller, Caller::Service { name: "portal".into(), on_behalf_of: Some("traveler-9".into()) });
    let p = verifier.verify(&with(json!({"svc": "portal", "act": {"sub": "traveler-8"}}))).await.unwrap();
    assert_eq!(p.end_user(), Some("traveler-8"));
    // A service holds no roles, whatever its token says.
    let p = verifier.verify(&with(json!({"svc": "portal", "roles": ["admin"]}))).await.unwrap();
    assert!(!p.has_role(Role::Admin));
    // Without `svc`, the same token is the user `sub`.
    let p = verifier.verify(&with(json!({}))).await.unwrap();
    assert_eq!(p, Principal::user("client-gateway", [], ISSUER));
}

#[tokio::test]
async fn roles_may_sit_at_a_dotted_path() {
    let key = ec_key("k");
    let server = JwksServer::start(&[&key]).await;
    let verifier = Verifier::new(AuthSettings {
        issuers: vec![IssuerSettings {
            roles_claim: "realm_access.roles".into(),
            ..IssuerSettings::new(ISSUER, AUDIENCE, &server.url)
        }],
        ..AuthSettings::default()
    })
    .unwrap();
    let mut claims = user_claims("u-1", &[Role::Admin]); // top-level `roles` is not the configured claim
    claims["realm_access"] = json!({"roles": ["supervisor", "offline_access", "uma_authorization"]});
    let p = verifier.verify(&sign(&key, &claims)).await.unwrap();
    assert_eq!(p, Principal::user("u-1", [Role::Supervisor], ISSUER));
    // An array `aud` containing ours is accepted.
    claims["aud"] = json!(["account", AUDIENCE]);
    verifier.verify(&sign(&key, &claims)).await.unwrap();
}

#[tokio::test]
async fn dev_issuer_tokens_are_verified_without_http() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevIssuer::load_or_create(dir.path()).unwrap();
    let verifier =
        Verifier::new(AuthSettings { dev_issuer: Some(dev.clone()), ..AuthSettings::default() }).unwrap();

    let token =
        dev.mint("dev-agent", &[Role::Agent, Role::Supervisor], std::time::Duration::from_secs(60)).unwrap();
    let p = verifier.verify(&token).await.unwrap();
    assert_eq!(p, Principal::user("dev-agent", [Role::Agent, Role::Supervisor], "detour-dev"));

    let token = dev.mint_service("portal", Some("traveler-1"), std::time::Duration::from_secs(60)).unwrap();
    let p = verifier.verify(&token).await.unwrap();
    assert_eq!(p, Principal::service("portal", Some("traveler-1".into()), "detour-dev"));

    // A verifier that does not trust the dev issuer refuses its tokens.
    let strict = Verifier::new(AuthSettings::default()).unwrap();
    assert_eq!(strict.verify(&token).await, Err(AuthError::WrongIssuer));
    // Another dev key (another machine's) is not trusted.
    let other_dir = tempfile::tempdir().unwrap();
    let other = DevIssuer::load_or_create(other_dir.path()).unwrap();
    let foreign = other.mint("x", &[Role::Admin], std::time::Duration::from_secs(60)).unwrap();
    assert_eq!(verifier.verify(&foreign).await, Err(AuthError::UnknownKey));
}

#[tokio::test]
async fn a_remembered_token_is_still_refused_once_it_expires() {
    let ec = ec_key("ec-1");
    let server = JwksServer::start(&[&ec]).await;
    let verifier = Verifier::new(AuthSettings { leeway_secs: 0, ..settings(&server) }).expect("verifier");
    let mut claims = user_claims("agent-7", &[Role::Agent]);
    claims["exp"] = json!(now() + 2);
    let token = sign(&ec, &claims);
    let first = verifier.verify(&token).await.expect("fresh token");
    // The second call is answered from the verified tokens: the same principal.
    assert_eq!(verifier.verify(&token).await.expect("again"), first);
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    assert!(matches!(verifier.verify(&token).await, Err(AuthError::Expired)));
    // A token differing in one byte of its signature is not the remembered one.
    let fresh = sign(&ec, &user_claims("agent-7", &[Role::Agent]));
    verifier.verify(&fresh).await.expect("fresh token");
    let mut forged = fresh.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert!(matches!(verifier.verify(&forged).await, Err(AuthError::BadSignature | AuthError::Malformed(_))));
}
