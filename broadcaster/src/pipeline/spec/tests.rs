use super::*;

#[test]
fn parses_names_and_filters() {
    let s: StreamSpec = "all".parse().unwrap();
    assert_eq!(s, StreamSpec::all());
    let s: StreamSpec = "downtown=routes:R1,R2;bbox:52.4,13.3,52.6,13.5"
        .parse()
        .unwrap();
    assert_eq!(s.name, "downtown");
    assert!(s.filter.matches("R1", 52.5, 13.4));
    assert!(!s.filter.matches("R3", 52.5, 13.4));
    assert!(!s.filter.matches("R1", 50.0, 13.4));
    assert_eq!(
        s.to_string(),
        "downtown=routes:R1,R2;bbox:52.4,13.3,52.6,13.5"
    );
    assert_eq!(s.to_string().parse::<StreamSpec>().unwrap(), s);
}

#[test]
fn refuses_bad_specs_with_clear_errors() {
    let cases = [
        ("Bad_Name", "DNS label"),
        ("x=colour:red", "unknown filter"),
        ("x=routes:", "empty route list"),
        ("x=bbox:1,2,3", "4 comma-separated"),
        ("x=bbox:1,2,a,4", "not a number"),
        ("x=bbox:10,0,5,1", "minimum must not exceed"),
        ("x=bbox:0,0,91,1", "latitudes"),
        ("x=bbox:NaN,0,1,1", "finite"),
    ];
    for (input, expect) in cases {
        let err = input.parse::<StreamSpec>().unwrap_err().to_string();
        assert!(err.contains(expect), "{input}: {err}");
    }
    let dup = vec![StreamSpec::all(), StreamSpec::all()];
    assert!(matches!(
        validate_streams(&dup),
        Err(SpecError::Duplicate(_))
    ));
}
