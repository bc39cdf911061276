//! Unit tests of `claims`.

use super::*;

fn claims(json: &str) -> Result<Claims, TokenError> {
    parse_claims(json.as_bytes())
}

#[test]
fn parse_table() {
    use TokenError::*;
    let cases: &[(&str, Option<TokenError>)] = &[
        (r#"{"iss":"i","exp":10}"#, None),
        (r#"{"iss":"i","exp":10.9}"#, None),
        (r#"{"iss":"i","exp":9223372036854775807}"#, None),
        (r#"{"exp":10}"#, Some(Malformed("iss"))),
        (r#"{"iss":1,"exp":10}"#, Some(Malformed("iss"))),
        (r#"{"iss":"i"}"#, Some(MissingClaim)),
        (r#"{"iss":"i","exp":"10"}"#, Some(Malformed("exp"))),
        (r#"{"iss":"i","exp":null}"#, Some(Malformed("exp"))),
        (r#"{"iss":"i","exp":-1}"#, Some(Malformed("exp"))),
        (r#"{"iss":"i","exp":-0.5}"#, Some(Malformed("exp"))),
        (r#"{"iss":"i","exp":2.001e+206}"#, None),
        (r#"{"iss":"i","exp":9223372036854775808}"#, None),
        (r#"{"iss":"i","exp":18446744073709551616}"#, None),
        (r#"{"iss":"i","exp":9.3e18}"#, None),
        (r#"{"iss":"i","exp":1e20,"nbf":1e20,"iat":1e300}"#, None),
        (r#"{"iss":"i","exp":-1e20}"#, Some(Malformed("exp"))),
        (r#"{"iss":"i","exp":1e400}"#, Some(Malformed("claims json"))),
        (r#"{"iss":"i","exp":10,"nbf":"1"}"#, Some(Malformed("nbf"))),
        (r#"{"iss":"i","exp":10,"iat":true}"#, Some(Malformed("iat"))),
        (
            r#"{"iss":"i","exp":10,"jti":12345}"#,
            Some(Malformed("jti")),
        ),
        (
            r#"{"iss":"i","exp":10,"parent_jti":1}"#,
            Some(Malformed("parent_jti")),
        ),
        (r#"{"iss":"i","exp":10,"sub":1}"#, Some(Malformed("sub"))),
        (r#"{"iss":"i","exp":10,"aud":1}"#, Some(Malformed("aud"))),
        (
            r#"{"iss":"i","exp":10,"aud":[1,2]}"#,
            Some(Malformed("aud")),
        ),
        (
            r#"{"iss":"i","exp":10,"scope":["a"]}"#,
            Some(Malformed("scope")),
        ),
        (r#"{"iss":"i","exp":10,"scp":[1]}"#, Some(Malformed("scp"))),
        (r#"{"iss":"i","exp":10,"cnf":"x"}"#, Some(Malformed("cnf"))),
        (
            r#"{"iss":"i","exp":10,"cnf":{"x5t#S256":1}}"#,
            Some(Malformed("cnf")),
        ),
        (
            r#"{"iss":"i","exp":10,"exp":99999999999}"#,
            Some(Malformed("claims json")),
        ),
        (r#"[]"#, Some(Malformed("claims json"))),
        (r#"not json"#, Some(Malformed("claims json"))),
    ];
    for (json, want) in cases {
        assert_eq!(claims(json).err(), *want, "{json}");
    }
}

#[test]
fn parse_values() {
    let c = claims(
        r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10.7,"nbf":1,"iat":2,"jti":"j",
            "parent_jti":"p","scope":"read  write","scp":["admin"],"cnf":{"x5t#S256":"t"},"x":{"y":1}}"#,
    )
    .unwrap();
    assert_eq!(c.iss, "i");
    assert_eq!(c.sub.as_deref(), Some("s"));
    assert_eq!(c.aud, ["a", "b"]);
    assert_eq!((c.exp, c.nbf, c.iat), (10, Some(1), Some(2)));
    assert_eq!(c.jti.as_deref(), Some("j"));
    assert_eq!(c.parent_jti.as_deref(), Some("p"));
    assert_eq!(c.scopes, ["read", "write", "admin"]);
    assert_eq!(c.cnf_x5t_s256.as_deref(), Some("t"));
    assert_eq!(lookup(&c.raw, "x.y"), Some(&Value::from(1)));
    assert!(check_required(&c, &["x.y".into(), "jti".into()]).is_ok());
    assert_eq!(
        check_required(&c, &["x.z".into()]),
        Err(TokenError::MissingClaim)
    );
    assert!(check_audience(&c, &[], true).is_ok());
    assert_eq!(
        check_audience(&c, &[], false),
        Err(TokenError::WrongAudience)
    );
    assert!(check_audience(&c, &["b".into()], false).is_ok());
    assert_eq!(
        check_audience(&c, &["c".into()], false),
        Err(TokenError::WrongAudience)
    );
    let single = claims(r#"{"iss":"i","exp":1,"aud":"a"}"#).unwrap();
    assert_eq!(single.aud, ["a"]);
    let none = claims(r#"{"iss":"i","exp":1}"#).unwrap();
    assert_eq!(
        check_audience(&none, &["a".into()], false),
        Err(TokenError::WrongAudience)
    );
    assert!(check_audience(&none, &[], true).is_ok());
}

#[test]
fn numeric_dates_beyond_64_bits_are_the_far_future() {
    for json in [
        r#"{"iss":"i","exp":1e20,"nbf":1e20,"iat":1e20}"#,
        r#"{"iss":"i","exp":18446744073709551616,"nbf":9223372036854775808,"iat":2.001e206}"#,
    ] {
        let c = claims(json).unwrap();
        assert_eq!(
            (c.exp, c.nbf, c.iat),
            (i64::MAX, Some(i64::MAX), Some(i64::MAX))
        );
    }
    let far = claims(r#"{"iss":"i","exp":1e20,"iat":1000}"#).unwrap();
    assert_eq!(check_time(far.times(), 1000, 30, None), Ok(()));
    assert_eq!(
        check_time(far.times(), 1000, 30, Some(3600)),
        Err(TokenError::LifetimeTooLong)
    );
    let nbf = claims(r#"{"iss":"i","exp":2000,"nbf":1e20}"#).unwrap();
    assert_eq!(
        check_time(nbf.times(), 1000, 30, None),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn time_boundaries() {
    use TokenError::*;
    let c = |exp: i64, nbf: Option<i64>, iat: Option<i64>| {
        let mut c = claims(r#"{"iss":"i","exp":0}"#).unwrap();
        (c.exp, c.nbf, c.iat) = (exp, nbf, iat);
        c.times()
    };
    let skew = 30;
    // exp: valid while now < exp + skew.
    assert_eq!(check_time(c(1000, None, None), 1029, skew, None), Ok(()));
    assert_eq!(
        check_time(c(1000, None, None), 1030, skew, None),
        Err(Expired)
    );
    assert_eq!(check_time(c(1000, None, None), 999, 0, None), Ok(()));
    assert_eq!(check_time(c(1000, None, None), 1000, 0, None), Err(Expired));
    // nbf: valid from nbf - skew.
    assert_eq!(
        check_time(c(5000, Some(1000), None), 970, skew, None),
        Ok(())
    );
    assert_eq!(
        check_time(c(5000, Some(1000), None), 969, skew, None),
        Err(NotYetValid)
    );
    // iat: at most skew in the future.
    assert_eq!(
        check_time(c(5000, None, Some(1000)), 970, skew, None),
        Ok(())
    );
    assert_eq!(
        check_time(c(5000, None, Some(1000)), 969, skew, None),
        Err(NotYetValid)
    );
    // lifetime.
    assert_eq!(
        check_time(c(1600, None, Some(1000)), 1000, skew, Some(600)),
        Ok(())
    );
    assert_eq!(
        check_time(c(1601, None, Some(1000)), 1000, skew, Some(600)),
        Err(LifetimeTooLong)
    );
    assert_eq!(
        check_time(c(1600, None, None), 1000, skew, Some(600)),
        Err(MissingClaim)
    );
    // Extremes do not overflow.
    assert_eq!(
        check_time(c(i64::MAX, Some(i64::MAX), None), i64::MAX, i64::MAX, None),
        Ok(())
    );
    assert_eq!(
        check_time(c(5, Some(i64::MAX), None), 0, skew, None),
        Err(NotYetValid)
    );
}
