//! Argon2id hashes: making them, checking passwords against them, and the
//! stand-in hash a login for an unknown email is checked against.
//!
//! Everything but [`params`] and [`hash`] (which read the config and the
//! random source) is pure and runs in native unit tests.

use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordVerifier, SaltString};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHasher, Version};
use bazaar_sdk::{Error, Result, config, platform};

/// Bytes of salt in a hash (the PHC recommendation, and the
/// `password-hash` crate's).
const SALT_LEN: usize = 16;

/// The salt of the stand-in hash. Any fixed value serves: no password is
/// meant to match it, only to cost what a real check costs.
const STAND_IN_SALT: [u8; SALT_LEN] = [0x5a; SALT_LEN];

/// The Argon2id parameters of new hashes: memory and passes come from the
/// config (`argon2_memory_kib`, `argon2_iterations`) so tests can make it
/// cheap; one lane, as WASI has no threads.
pub fn params() -> Result<Params> {
    Params::new(
        config::get_or("argon2_memory_kib", Params::DEFAULT_M_COST),
        config::get_or("argon2_iterations", Params::DEFAULT_T_COST),
        1,
        None,
    )
    .map_err(|e| Error::internal(format!("argon2 parameters from the config: {e}")))
}

/// A new hash of `password` with a random salt.
pub fn hash(password: &str) -> Result<String> {
    let salt = platform::random_bytes(SALT_LEN as u64);
    hash_with(password, &params()?, &salt).map_err(Error::internal)
}

/// The Argon2id hash of `password` with `params` and `salt`, in PHC form.
pub fn hash_with(
    password: &str,
    params: &Params,
    salt: &[u8],
) -> argon2::password_hash::Result<String> {
    let salt = SaltString::encode_b64(salt)?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    Ok(hasher
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches `hash`. The hash carries its own parameters,
/// so changing the config does not lock out existing users; a hash that
/// does not parse is the service's fault, a 500.
pub fn verify(password: &str, hash: &str) -> Result<bool> {
    matches(password, hash).map_err(|e| Error::internal(format!("a stored hash: {e}")))
}

/// [`verify`], with the parse error as it is.
fn matches(password: &str, hash: &str) -> argon2::password_hash::Result<bool> {
    let parsed = PasswordHash::new(hash)?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// A hash with exactly the form and parameters of a new one — Argon2id,
/// version 0x13, `params`, a 16-byte salt, a 32-byte output — that no
/// password matches: its output is all zeros, not the hash of anything.
///
/// A login for an unknown email is checked against it, so it costs what
/// a real check costs (one Argon2id evaluation with `params`) and its
/// response time does not tell which emails exist. Nothing is hashed to
/// make it: computing a real dummy per request would cost a second
/// evaluation, as every request runs in a fresh instance, and that
/// difference would give the game away.
pub fn stand_in(params: &Params) -> argon2::password_hash::Result<String> {
    let salt = SaltString::encode_b64(&STAND_IN_SALT)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let hash = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&vec![0; output_len])?),
    };
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameters cheap enough for unit tests.
    fn cheap() -> Params {
        Params::new(64, 1, 1, None).unwrap()
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_with("correct horse", &cheap(), &[7; SALT_LEN]).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert_eq!(matches("correct horse", &hash), Ok(true));
        assert_eq!(matches("battery staple", &hash), Ok(false));
    }

    #[test]
    fn hashes_keep_their_own_parameters() {
        let old = hash_with("pw", &Params::new(32, 2, 1, None).unwrap(), &[1; SALT_LEN]).unwrap();
        assert_eq!(
            matches("pw", &old),
            Ok(true),
            "verify must not use new parameters"
        );
    }

    #[test]
    fn the_stand_in_has_the_form_and_parameters_of_a_real_hash() {
        let params = Params::new(256, 2, 1, None).unwrap();
        let real = hash_with("pw", &params, &[3; SALT_LEN]).unwrap();
        let stand_in = stand_in(&params).unwrap();
        let (real, stand_in) = (
            PasswordHash::new(&real).unwrap(),
            PasswordHash::new(&stand_in).unwrap(),
        );
        assert_eq!(stand_in.algorithm, real.algorithm);
        assert_eq!(stand_in.version, real.version);
        assert_eq!(stand_in.params, real.params, "same cost as a real check");
        assert_eq!(
            stand_in.salt.map(|s| s.len()),
            real.salt.map(|s| s.len()),
            "same salt length"
        );
        assert_eq!(stand_in.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[test]
    fn no_password_matches_the_stand_in() {
        let stand_in = stand_in(&cheap()).unwrap();
        for password in ["", "password", "correct horse"] {
            assert_eq!(matches(password, &stand_in), Ok(false), "{password:?}");
        }
    }

    #[test]
    fn an_unparsable_hash_is_an_error_not_a_mismatch() {
        assert!(matches("pw", "not a hash").is_err());
    }
}
