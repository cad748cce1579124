//! Bot Framework token checks (DESIGN §6), against the fake token issuer: every way a
//! token can be wrong is refused, and the signing keys are fetched once and cached.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use waiver::chat::teams::auth::{AuthError, Verified, Verifier};
use waiver::clock::Clock;
use waiver::config::{Secret, TeamsConfig};
use waiver::fakes::teams::{ENDORSED_KID, FakeTeams, SigningKey, UNENDORSED_KID};

const APP_ID: &str = "00000000-0000-0000-0000-0000000b0700";

async fn fake() -> FakeTeams {
    FakeTeams::start(
        APP_ID,
        "app-password",
        "tenant-1",
        Clock::starting_at(common::now()),
    )
    .await
}

fn verifier(fake: &FakeTeams) -> Verifier {
    let config = TeamsConfig {
        app_id: APP_ID.into(),
        app_password: Secret::new("app-password"),
        tenant_id: "tenant-1".into(),
        openid_metadata_url: fake.openid_url(),
        token_url: fake.token_url(),
        service_urls: vec![fake.service_url()],
    };
    waiver::chat::install_tls_provider();
    Verifier::new(config, reqwest::Client::new(), fake.clock().clone())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token with `edit` applied to the Connector's claims, signed with the endorsed key.
fn token_with(fake: &FakeTeams, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = fake.claims(&fake.service_url());
    edit(&mut claims);
    fake.sign(&claims, SigningKey::Endorsed, ENDORSED_KID)
}

async fn check(v: &Verifier, fake: &FakeTeams, token: &str) -> Result<Verified, AuthError> {
    let verified = v.verify(Some(&bearer(token))).await?;
    v.check_activity(&verified, "msteams", &fake.service_url())?;
    Ok(verified)
}

#[tokio::test]
async fn a_token_signed_as_the_connector_signs_it_is_accepted_and_keys_are_cached() {
    let fake = fake().await;
    let v = verifier(&fake);
    for _ in 0..20 {
        let token = fake.token(&fake.service_url());
        let verified = check(&v, &fake, &token).await.expect("accepted");
        assert!(verified.endorsements.iter().any(|e| e == "msteams"));
    }
    assert_eq!(
        v.fetches(),
        1,
        "the keys were fetched once for twenty activities"
    );
    assert_eq!(fake.calls_of("keys").len(), 1);
    assert_eq!(fake.calls_of("openid").len(), 1);
}

#[tokio::test]
async fn a_token_within_the_five_minute_skew_is_accepted() {
    let fake = fake().await;
    let v = verifier(&fake);
    let now = fake.clock().unix_seconds();
    let late = token_with(&fake, |c| c["exp"] = json!(now - 299));
    assert!(check(&v, &fake, &late).await.is_ok());
    let early = token_with(&fake, |c| c["nbf"] = json!(now + 299));
    assert!(check(&v, &fake, &early).await.is_ok());
}

#[tokio::test]
async fn every_wrong_token_is_refused_for_its_reason() {
    let fake = fake().await;
    let v = verifier(&fake);
    let now = fake.clock().unix_seconds();
    let service_url = fake.service_url();
    let hs256_with_the_public_key = {
        let header = URL_SAFE_NO_PAD
            .encode(json!({"alg": "HS256", "typ": "JWT", "kid": ENDORSED_KID}).to_string());
        let claims = URL_SAFE_NO_PAD.encode(fake.claims(&service_url).to_string());
        let keys = reqwest::get(format!("http://{}/keys", fake.addr()))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let public = keys["keys"][0]["n"].as_str().unwrap().to_string();
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(public.as_bytes()).unwrap();
        mac.update(format!("{header}.{claims}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{claims}.{sig}")
    };
    let alg_none = {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
        let claims = URL_SAFE_NO_PAD.encode(fake.claims(&service_url).to_string());
        format!("{header}.{claims}.")
    };
    let cases: Vec<(&str, String, AuthError)> = vec![
        (
            "wrong audience",
            token_with(&fake, |c| c["aud"] = json!("another-bot")),
            AuthError::Audience,
        ),
        (
            "wrong issuer",
            token_with(&fake, |c| c["iss"] = json!("https://sts.windows.net/x/")),
            AuthError::Issuer,
        ),
        (
            "expired beyond the skew",
            token_with(&fake, |c| c["exp"] = json!(now - 301)),
            AuthError::Expired,
        ),
        (
            "not yet valid beyond the skew",
            token_with(&fake, |c| c["nbf"] = json!(now + 301)),
            AuthError::NotYetValid,
        ),
        (
            "unknown key id",
            fake.sign(
                &fake.claims(&service_url),
                SigningKey::Endorsed,
                "no-such-kid",
            ),
            AuthError::UnknownKey,
        ),
        (
            "signed by another key than its kid names",
            fake.sign(
                &fake.claims(&service_url),
                SigningKey::Unendorsed,
                ENDORSED_KID,
            ),
            AuthError::Signature,
        ),
        ("alg none", alg_none, AuthError::BadToken),
        (
            "HS256 signed with the public key",
            hs256_with_the_public_key,
            AuthError::Algorithm,
        ),
        (
            "a key without the msteams endorsement",
            fake.sign(
                &fake.claims(&service_url),
                SigningKey::Unendorsed,
                UNENDORSED_KID,
            ),
            AuthError::NotEndorsed("msteams".into()),
        ),
        (
            "serviceurl claim is not the activity's serviceUrl",
            token_with(&fake, |c| {
                c["serviceurl"] = json!("https://smba.trafficmanager.net/x/")
            }),
            AuthError::ServiceUrl,
        ),
        (
            "no exp",
            token_with(&fake, |c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            AuthError::BadToken,
        ),
    ];
    for (what, token, expected) in cases {
        assert_eq!(
            check(&v, &fake, &token).await.unwrap_err(),
            expected,
            "{what}"
        );
    }
    // An activity from another Bot Framework channel, signed with a key endorsed for
    // it (Web Chat lets the client write the sender's identity): refused.
    let token = fake.sign(
        &fake.claims(&service_url),
        SigningKey::Unendorsed,
        UNENDORSED_KID,
    );
    let verified = v.verify(Some(&bearer(&token))).await.unwrap();
    assert_eq!(
        v.check_activity(&verified, "webchat", &service_url),
        Err(AuthError::Channel("webchat".into()))
    );
    // A serviceUrl the bot is not configured to call, even with a matching claim.
    let elsewhere = "https://evil.example/connector/";
    let token = fake.token(elsewhere);
    let verified = v.verify(Some(&bearer(&token))).await.unwrap();
    assert_eq!(
        v.check_activity(&verified, "msteams", elsewhere),
        Err(AuthError::ServiceUrlNotAllowed)
    );
    // The header itself.
    assert_eq!(v.verify(None).await.unwrap_err(), AuthError::Missing);
    for header in [
        "Basic abc",
        "Bearer",
        "Bearer ",
        "bearer x.y.z",
        "Bearer a b",
    ] {
        assert_eq!(
            v.verify(Some(header)).await.unwrap_err(),
            AuthError::Malformed,
            "{header:?}"
        );
    }
    assert_eq!(
        v.verify(Some("Bearer not-a-jwt")).await.unwrap_err(),
        AuthError::BadToken
    );
    assert_eq!(AuthError::Audience.status(), 403);
    assert_eq!(AuthError::Expired.status(), 401);
}

#[tokio::test]
async fn a_flood_of_unknown_key_ids_refreshes_the_keys_at_most_once_a_minute() {
    let fake = fake().await;
    let v = verifier(&fake);
    check(&v, &fake, &fake.token(&fake.service_url()))
        .await
        .unwrap();
    for i in 0..50 {
        let token = fake.sign(
            &fake.claims(&fake.service_url()),
            SigningKey::Endorsed,
            &format!("made-up-{i}"),
        );
        assert_eq!(
            check(&v, &fake, &token).await.unwrap_err(),
            AuthError::UnknownKey
        );
    }
    assert_eq!(
        v.fetches(),
        2,
        "the first fetch, and one refresh for unknown kids"
    );
}
