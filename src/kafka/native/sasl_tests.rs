//! Unit tests of the SASL exchanges (in a file of their own to keep `sasl.rs` short).
use super::*;
use proptest::prelude::*;

const RFC_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

fn rfc_client() -> SaslClient {
    SaslClient::scram_with_nonce(false, "user", "pencil", Ok(RFC_NONCE.to_string()))
}

#[test]
fn mechanisms_parse_and_name() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::parse(m.name()), Some(m));
    }
    assert_eq!(Mechanism::parse("scram-sha-512"), Some(Mechanism::ScramSha512));
    assert_eq!(Mechanism::parse("GSSAPI"), None);
}

#[test]
fn plain_sends_one_message() {
    let mut c = SaslClient::plain("alice", "s3cret");
    assert_eq!(c.mechanism(), "PLAIN");
    assert_eq!(c.initial().unwrap(), b"\0alice\0s3cret");
    assert_eq!(c.respond(b"").unwrap(), None);
    assert!(c.respond(b"").is_err() && c.initial().is_err(), "out of order");
    assert!(SaslClient::plain("a\0b", "p").initial().is_err());
    assert!(
        SaslClient::plain("u", "p").respond(b"").is_err(),
        "respond before initial"
    );
    let mut c = SaslClient::scram_with_nonce(false, "u", "p", Err("no randomness".into()));
    assert!(c.initial().unwrap_err().contains("no randomness"));
}

#[test]
fn scram_sha256_rfc7677_vector() {
    let mut c = rfc_client();
    assert_eq!(c.initial().unwrap(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let final_msg = c.respond(RFC_SERVER_FIRST.as_bytes()).unwrap().unwrap();
    assert_eq!(
        String::from_utf8(final_msg).unwrap(),
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    assert_eq!(
        c.respond(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap(),
        None
    );
}

#[test]
fn scram_bad_server_final_is_an_error() {
    let cases = [
        (
            "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "signature does not match",
        ),
        ("e=invalid-proof", "invalid-proof"),
        ("v=!!!", "not valid base64"),
        ("x", "not a list"),
        ("", "not a list"),
    ];
    for (server, reason) in cases {
        let mut c = rfc_client();
        c.initial().unwrap();
        c.respond(RFC_SERVER_FIRST.as_bytes()).unwrap();
        let e = c.respond(server.as_bytes()).unwrap_err();
        assert!(e.contains(reason), "{server:?}: {e}");
        assert!(c.respond(b"v=x").is_err(), "no step after a failure");
    }
}

#[test]
fn scram_malformed_server_first_is_an_error() {
    let (n, s) = ("r=rOprNGfwEbeRWgbNEkqOx", "s=W22ZaJ0SNY7soEsUEjb6gQ==");
    let cases = [
        (String::new(), "not a list"),
        (format!("{s},i=4096"), "no nonce"),
        (format!("r=someoneelse123,{s},i=4096"), "does not extend"),
        (format!("r={RFC_NONCE},{s},i=4096"), "does not extend"),
        (format!("{n},i=4096"), "no salt"),
        (format!("{n},s=!!!,i=4096"), "not valid base64"),
        (format!("{n},{s}"), "no iteration"),
        (format!("{n},{s},i=4095"), "outside"),
        (format!("{n},{s},i=99999999"), "outside"),
        (format!("{n},{s},i=-1"), "not a number"),
        (format!("m=ext,{n},{s},i=4096"), "extension"),
        ("e=unknown-user".to_string(), "unknown-user"),
    ];
    for (server, reason) in cases {
        let mut c = rfc_client();
        c.initial().unwrap();
        let e = c.respond(server.as_bytes()).unwrap_err();
        assert!(e.contains(reason) && !e.contains("pencil"), "{server:?}: {e}");
    }
}

#[test]
fn scram_username_is_escaped() {
    let mut c = SaslClient::scram_with_nonce(true, "a,b=c", "p", Ok("abc".into()));
    assert_eq!(c.initial().unwrap(), b"n,,n=a=2Cb=3Dc,r=abc");
    assert_eq!(c.mechanism(), "SCRAM-SHA-512");
}

/// The server side of SCRAM-SHA-512, written from RFC 5802 independently of the client code:
/// checks the proof and returns server-final.
fn sha512_server(password: &str, salt: &[u8], messages: [&str; 3]) -> String {
    let [client_first, server_first, client_final] = messages;
    let mut salted = [0u8; 64];
    let i = NonZeroU32::new(4096).unwrap();
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA512, i, salt, password.as_bytes(), &mut salted);
    let salted = hmac::Key::new(hmac::HMAC_SHA512, &salted);
    let stored = digest::digest(&digest::SHA512, hmac::sign(&salted, b"Client Key").as_ref());
    let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
    let auth = format!("{},{server_first},{without_proof}", &client_first[3..]);
    let sig = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, stored.as_ref()), auth.as_bytes());
    let proof = B64.decode(proof).unwrap();
    let key: Vec<u8> = proof.iter().zip(sig.as_ref()).map(|(p, s)| p ^ s).collect();
    if digest::digest(&digest::SHA512, &key).as_ref() != stored.as_ref() {
        return "e=invalid-proof".into();
    }
    let server_key = hmac::sign(&salted, b"Server Key");
    let v = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA512, server_key.as_ref()), auth.as_bytes());
    format!("v={}", B64.encode(v))
}

#[test]
fn scram_sha512_round_trip() {
    let salt = b"0123456789abcdef";
    for (client_pw, ok) in [("hunter2", true), ("wrong", false)] {
        let mut c = SaslClient::scram(true, "bob", client_pw);
        let first = String::from_utf8(c.initial().unwrap()).unwrap();
        let nonce = &first[first.find("r=").unwrap() + 2..];
        assert_eq!(nonce.len(), 32, "24 random bytes, base64");
        let server_first = format!("r={nonce}srv,s={},i=4096", B64.encode(salt));
        let client_final = String::from_utf8(c.respond(server_first.as_bytes()).unwrap().unwrap()).unwrap();
        let server_final = sha512_server("hunter2", salt, [&first, &server_first, &client_final]);
        assert_eq!(c.respond(server_final.as_bytes()).is_ok(), ok, "{client_pw}");
    }
}

#[test]
fn oauthbearer_message_and_extensions() {
    let ext = BTreeMap::from([("logicalCluster".to_string(), "lkc-1".to_string())]);
    let mut c = SaslClient::oauthbearer("eyJ.abc.", &ext);
    assert_eq!(
        c.initial().unwrap(),
        b"n,,\x01auth=Bearer eyJ.abc.\x01logicalCluster=lkc-1\x01\x01"
    );
    assert_eq!(c.respond(b"").unwrap(), None);
    for (k, v) in [("auth", "x"), ("bad-key", "x"), ("", "x"), ("ok", "a\x01b"), ("ok", "")] {
        let ext = BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(SaslClient::oauthbearer("tok", &ext).initial().is_err(), "{k:?}={v:?}");
    }
    let e = SaslClient::oauthbearer("secret\x01tok", &BTreeMap::new())
        .initial()
        .unwrap_err();
    assert!(!e.contains("secret"), "{e}");
}

#[test]
fn oauthbearer_server_error_is_reported() {
    let mut c = SaslClient::oauthbearer("secrettoken", &BTreeMap::new());
    c.initial().unwrap();
    let e = c.respond(br#"{"status":"invalid_token","scope":"kafka"}"#).unwrap_err();
    assert!(e.contains("invalid_token") && e.contains("kafka"), "{e}");
    assert!(!e.contains("secrettoken"));
    let mut c = SaslClient::oauthbearer("t", &BTreeMap::new());
    c.initial().unwrap();
    assert!(c.respond(b"\xff garbage").unwrap_err().contains("unreadable"));
}

#[test]
fn debug_hides_secrets() {
    let mut c = SaslClient::scram(false, "user", "pencil");
    c.initial().unwrap();
    let d = format!("{c:?} {:?}", SaslClient::plain("u", "pencil"));
    let d2 = format!("{:?}", SaslClient::oauthbearer("tokentoken", &BTreeMap::new()));
    assert!(
        d.contains("user") && !d.contains("pencil") && !d2.contains("tokentoken"),
        "{d} {d2}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn respond_never_panics(first in proptest::collection::vec(any::<u8>(), 0..200),
                            second in proptest::collection::vec(any::<u8>(), 0..200),
                            which in 0usize..4) {
        let mut c = match which {
            0 => SaslClient::plain("u", "p"),
            1 => SaslClient::oauthbearer("t", &BTreeMap::new()),
            _ => SaslClient::scram_with_nonce(which == 3, "u", "p", Ok("n".into())),
        };
        c.initial().unwrap();
        let _ = c.respond(&first);
        let _ = c.respond(&second);
    }

    #[test]
    fn scram_server_first_like_input_never_panics(tail in "[ -~]{0,60}", i in any::<u32>()) {
        let mut c = SaslClient::scram_with_nonce(false, "u", "p", Ok("n".into()));
        c.initial().unwrap();
        let i = i.clamp(0, 20_000);
        let _ = c.respond(format!("r=n{tail},s=c2FsdA==,i={i}").as_bytes());
        let _ = c.respond(format!("v={tail}").as_bytes());
    }
}
