//! Resolves a scheme's `secrets` list and refuses values that are plainly not a secret.

use crate::config::secret::{Secret, SecretError, SecretSource};

/// The resolver [`super::VerifyConfig::build`] receives from the configuration loader.
pub(crate) type Resolve<'a> = dyn FnMut(&SecretSource) -> Result<Secret, SecretError> + 'a;

/// Resolves every source in order; errors name the entry, as in `secrets[1]: ...`.
pub(crate) fn resolve_all(
    key: &str,
    sources: &[SecretSource],
    resolve: &mut Resolve<'_>,
) -> Result<Vec<Secret>, String> {
    if sources.is_empty() {
        return Err(format!("{key}: list at least one secret"));
    }
    sources
        .iter()
        .enumerate()
        .map(|(i, source)| resolve(source).map_err(|e| format!("{key}[{i}]: {e}")))
        .collect()
}

/// Resolves the list, then applies `check` to each secret's text, naming the entry on error.
pub(crate) fn resolve_checked(
    sources: &[SecretSource],
    resolve: &mut Resolve<'_>,
    check: impl Fn(&Secret) -> Result<(), String>,
) -> Result<Vec<Secret>, String> {
    let secrets = resolve_all("secrets", sources, resolve)?;
    for (i, secret) in secrets.iter().enumerate() {
        check(secret).map_err(|e| format!("secrets[{i}]: {e}"))?;
    }
    Ok(secrets)
}

/// Refuses a secret that starts like the signature it should produce (`sha256=`, `v1,`):
/// someone pasted a header value where the secret belongs.
pub(crate) fn not_a_signature(secret: &Secret, signature_prefixes: &[&str]) -> Result<(), String> {
    let text = secret.expose_str().unwrap_or_default();
    match signature_prefixes
        .iter()
        .find(|prefix| !prefix.is_empty() && starts_with_ignore_case(text, prefix))
    {
        Some(prefix) => Err(format!(
            "secret starts with `{prefix}`: paste the secret, not a signature"
        )),
        None => Ok(()),
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(values: &[&str]) -> Vec<SecretSource> {
        values
            .iter()
            .map(|v| SecretSource::Inline((*v).into()))
            .collect()
    }

    fn resolver(source: &SecretSource) -> Result<Secret, SecretError> {
        match source {
            SecretSource::Inline(v) if v.is_empty() => {
                Err(SecretError::Empty("the inline secret".into()))
            }
            SecretSource::Inline(v) => Ok(Secret::new(v.as_bytes())),
            _ => Err(SecretError::EnvMissing("X".into())),
        }
    }

    #[test]
    fn errors_name_the_entry() {
        let err = resolve_all("secrets", &inline(&["a", ""]), &mut resolver).unwrap_err();
        assert_eq!(err, "secrets[1]: the inline secret is empty");
    }

    #[test]
    fn an_empty_list_is_refused() {
        assert!(resolve_all("secrets", &[], &mut resolver).is_err());
    }

    #[test]
    fn a_pasted_signature_is_refused_without_echoing_it() {
        let err = resolve_checked(&inline(&["ok", "SHA256=abcdef"]), &mut resolver, |s| {
            not_a_signature(s, &["sha256="])
        })
        .unwrap_err();
        assert_eq!(
            err,
            "secrets[1]: secret starts with `sha256=`: paste the secret, not a signature"
        );
    }
}
