use super::*;

const DAY: Duration = Duration::from_secs(86_400);
const NOW: u64 = 1_780_000_000_000;

fn names() -> Vec<String> {
    serving_names("stallwatch-webhook", "stallwatch-system", Some("127.0.0.1"))
}

#[test]
fn a_generated_bundle_loads_into_rustls_and_names_the_service() {
    let b = CertBundle::generate(&names(), NOW, 90 * DAY).unwrap();
    assert!(b.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(b.key_pem.contains("PRIVATE KEY"));
    assert_ne!(b.ca_pem, b.cert_pem);
    assert_eq!(b.not_after_ms, NOW + 90 * DAY.as_millis() as u64);
    assert_eq!(b.not_before_ms, NOW);
    b.certified_key().expect("certificate and key match");
    assert_eq!(b.ca_bundle(), b.ca_pem);
    assert_eq!(
        names()[..2],
        [
            "stallwatch-webhook.stallwatch-system.svc".to_string(),
            "stallwatch-webhook.stallwatch-system.svc.cluster.local".to_string()
        ]
    );
}

#[test]
fn rotation_is_due_with_a_third_of_the_lifetime_left() {
    let b = CertBundle::generate(&names(), NOW, 90 * DAY).unwrap();
    assert!(!b.needs_rotation(NOW));
    assert!(!b.needs_rotation(NOW + 59 * DAY.as_millis() as u64));
    assert!(b.needs_rotation(NOW + 61 * DAY.as_millis() as u64));
    assert!(
        b.needs_rotation(NOW + 91 * DAY.as_millis() as u64),
        "expired"
    );
    assert!(
        b.needs_rotation(NOW - DAY.as_millis() as u64),
        "not valid yet"
    );
}

#[test]
fn a_rotated_bundle_trusts_the_previous_ca_until_the_next_rotation() {
    let first = CertBundle::generate(&names(), NOW, 90 * DAY).unwrap();
    let later = NOW + 61 * DAY.as_millis() as u64;
    let second = first.rotated(&names(), later, 90 * DAY).unwrap();
    assert_ne!(second.ca_pem, first.ca_pem);
    assert_ne!(second.key_pem, first.key_pem);
    assert_eq!(
        second.previous_ca_pem.as_deref(),
        Some(first.ca_pem.as_str())
    );
    assert_eq!(
        second.ca_bundle(),
        format!("{}{}", second.ca_pem, first.ca_pem)
    );
    assert!(!second.needs_rotation(later));
    let third = second
        .rotated(&names(), later + 61 * DAY.as_millis() as u64, 90 * DAY)
        .unwrap();
    assert_eq!(
        third.previous_ca_pem.as_deref(),
        Some(second.ca_pem.as_str())
    );
    assert!(
        !third.ca_bundle().contains(&first.ca_pem),
        "only one CA back"
    );
    // An expired bundle's CA is not carried over.
    let revived = first
        .rotated(&names(), NOW + 100 * DAY.as_millis() as u64, DAY)
        .unwrap();
    assert_eq!(revived.previous_ca_pem, None);
}

#[test]
fn a_bundle_survives_its_secret() {
    let b = CertBundle::generate(&names(), NOW, DAY)
        .unwrap()
        .rotated(&names(), NOW + 1000, DAY)
        .unwrap();
    let data = b.to_secret_data();
    assert_eq!(CertBundle::from_secret_data(&data).unwrap(), b);
    let mut broken = data.clone();
    broken.remove(KEY_KEY);
    assert!(matches!(
        CertBundle::from_secret_data(&broken),
        Err(TlsError::Missing(KEY_KEY))
    ));
    let mut garbled = data;
    garbled.insert(NOT_AFTER_KEY.into(), ByteString(b"soon".to_vec()));
    assert!(matches!(
        CertBundle::from_secret_data(&garbled),
        Err(TlsError::Invalid(NOT_AFTER_KEY))
    ));
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let a = CertBundle::generate(&names(), NOW, DAY).unwrap();
    let b = CertBundle::generate(&names(), NOW, DAY).unwrap();
    assert!(certified_key(&a.cert_pem, &b.key_pem).is_err());
}

#[test]
fn the_debug_output_never_shows_the_key() {
    let b = CertBundle::generate(&names(), NOW, DAY).unwrap();
    assert!(!format!("{b:?}").contains("PRIVATE"));
}
