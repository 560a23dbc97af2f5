//! Secrets named in the configuration: where they come from and a type that never prints them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Where a secret's value comes from, as written in `gateway.toml`.
///
/// `{ env = "NAME" }`, `{ file = "path" }` or an inline string (which works, but is
/// warned about at start because it ends up in version control).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The value of an environment variable.
    Env {
        /// Name of the environment variable.
        env: String,
    },
    /// The contents of a file, surrounding whitespace trimmed.
    File {
        /// Path of the file, relative to the configuration file's folder.
        file: PathBuf,
        /// Create the file with a random secret when it does not exist (development).
        create: bool,
    },
    /// The secret written into the configuration itself.
    Inline(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env { env } => write!(f, "Env({env})"),
            SecretSource::File { file, create } => {
                write!(f, "File({}, create: {create})", file.display())
            }
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SourceVisitor)
    }
}

struct SourceVisitor;

impl<'de> Visitor<'de> for SourceVisitor {
    type Value = SecretSource;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret: { env = \"NAME\" }, { file = \"path\" } or a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<SecretSource, E> {
        Ok(SecretSource::Inline(value.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretSource, A::Error> {
        let (mut env, mut file, mut create) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "env" => env = Some(map.next_value::<String>()?),
                "file" => file = Some(map.next_value::<PathBuf>()?),
                "create" => create = Some(map.next_value::<bool>()?),
                other => {
                    let msg = format!("unknown key `{other}` in a secret: use `env` or `file`");
                    return Err(de::Error::custom(msg));
                }
            }
        }
        match (env, file, create) {
            (Some(env), None, None) => Ok(SecretSource::Env { env }),
            (None, Some(file), create) => Ok(SecretSource::File {
                file,
                create: create.unwrap_or(false),
            }),
            (Some(_), Some(_), _) => Err(de::Error::custom(
                "a secret takes `env` or `file`, not both",
            )),
            (Some(_), None, Some(_)) => {
                Err(de::Error::custom("`create` goes with `file`, not `env`"))
            }
            (None, None, _) => Err(de::Error::custom(
                "a secret needs `env = \"NAME\"` or `file = \"path\"`",
            )),
        }
    }
}

/// A resolved secret. Its `Debug` output never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps raw secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The secret's bytes, for keying a MAC or comparing a token.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, when it is UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a secret could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The named environment variable is not set or empty.
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    /// The file could not be read or created.
    #[error("secret file {path}: {source}")]
    File {
        /// The file's resolved path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The source resolved to nothing.
    #[error("{0} is empty")]
    Empty(String),
}

/// How the secrets of a configuration are read while it is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// As the gateway starts: environment and files, creating the files marked
    /// `create = true` that are missing.
    Start,
    /// As `hookgate check` does: the same, but a missing file marked `create = true` is
    /// left missing, and [`STAND_IN`] is used in its place.
    Check,
    /// Nothing outside the text is read: environment and file secrets are all
    /// [`STAND_IN`], inline ones are taken as written. For exercising the loader alone.
    Offline,
    /// As the operator commands do: as [`Reading::Start`], but a secret that cannot be
    /// read (an unset variable, a missing file) is [`STAND_IN`] and named in
    /// [`Config::unread`](crate::config::Config::unread), so that a command needs only the
    /// secrets it uses.
    Lenient,
}

/// The secret used where [`Reading`] says not to read the real one. It is valid for every
/// scheme, a `whsec_` one included.
pub const STAND_IN: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

impl SecretSource {
    /// Reads the secret, resolving relative file paths against `base`, creating a missing
    /// file marked `create = true`.
    pub fn resolve(&self, base: &Path) -> Result<Secret, SecretError> {
        self.read(base, Reading::Start)
    }

    /// Reads the secret as `reading` says, resolving relative file paths against `base`.
    pub fn read(&self, base: &Path, reading: Reading) -> Result<Secret, SecretError> {
        let value = match (self, reading) {
            (SecretSource::Inline(value), _) => value.clone(),
            (_, Reading::Offline) => STAND_IN.to_owned(),
            (SecretSource::Env { env }, _) => {
                std::env::var(env).map_err(|_| SecretError::EnvMissing(env.clone()))?
            }
            (SecretSource::File { file, create }, Reading::Start | Reading::Lenient) => {
                read_file(&base.join(file), *create)?
            }
            (SecretSource::File { file, create }, Reading::Check) => {
                let path = base.join(file);
                match *create && !path.exists() {
                    true => STAND_IN.to_owned(),
                    false => read_file(&path, false)?,
                }
            }
        };
        let value = value.trim();
        if value.is_empty() {
            let what = match self {
                SecretSource::Env { env } => format!("environment variable {env}"),
                SecretSource::File { file, .. } => format!("secret file {}", file.display()),
                SecretSource::Inline(_) => "the inline secret".to_owned(),
            };
            return Err(SecretError::Empty(what));
        }
        Ok(Secret::new(value.as_bytes()))
    }

    /// Whether the secret is written into the configuration file itself.
    pub fn is_inline(&self) -> bool {
        matches!(self, SecretSource::Inline(_))
    }
}

fn read_file(path: &Path, create: bool) -> Result<String, SecretError> {
    let wrap = |source| SecretError::File {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let token = random_token();
            write_private(path, &token).map_err(wrap)?;
            tracing::warn!(path = %path.display(), "created a development secret");
            Ok(token)
        }
        Err(e) => Err(wrap(e)),
    }
}

/// A random URL-safe token of 32 bytes of entropy.
pub fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes a file readable by its owner only, creating its folder.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn file_secret_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let source = SecretSource::File {
            file: "certs/dev.token".into(),
            create: true,
        };
        let first = source.resolve(dir.path()).unwrap();
        let second = source.resolve(dir.path()).unwrap();
        assert_eq!(first, second);
        assert!(first.expose().len() >= 32);
    }

    #[test]
    fn missing_env_is_named() {
        let source = SecretSource::Env {
            env: "HOOKGATE_TEST_SURELY_UNSET".into(),
        };
        let err = source.resolve(Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("HOOKGATE_TEST_SURELY_UNSET"));
    }
}
