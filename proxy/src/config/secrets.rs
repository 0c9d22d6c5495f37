//! Secrets — account passwords and the admin token — from files and the
//! environment, so none has to be a flag: a command line is visible to
//! every user of the host (`ps`, `/proc/PID/cmdline`). Flags still work,
//! with a warning at start.
//!
//! Where each comes from, the later winning: the `--config` file, then
//! `--users-file` / `--admin-token-file`, then `TORPOR_USERS` /
//! `TORPOR_ADMIN_TOKEN`, then `--user` / `--admin-token`.

use std::path::Path;

use super::{Cli, ConfigError};

/// Accounts as `NAME:PASSWORD` lines, like `--users-file`'s.
pub const USERS_ENV: &str = "TORPOR_USERS";
/// The admin API's bearer token.
pub const ADMIN_TOKEN_ENV: &str = "TORPOR_ADMIN_TOKEN";
/// The password of `[backend] admin_user`.
pub const BACKEND_ADMIN_PASSWORD_ENV: &str = "TORPOR_BACKEND_ADMIN_PASSWORD";

/// A secret file's content, without the line end an editor adds.
pub fn read_secret_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// One `NAME:PASSWORD` account (PASSWORD may be a native hash).
pub fn parse_user(spec: &str, origin: &str) -> Result<(String, String), ConfigError> {
    let (name, secret) = spec
        .split_once(':')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "{origin} wants NAME:PASSWORD, got '{}'",
                redact(spec)
            ))
        })?;
    Ok((name.to_string(), secret.to_string()))
}

/// `NAME:PASSWORD` lines; blank lines and lines starting with `#` are
/// skipped.
pub fn parse_user_lines(text: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    text.lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| parse_user(line, origin))
        .collect()
}

/// A `NAME:PASSWORD` value with its secret removed, for error messages.
pub fn redact(spec: &str) -> String {
    spec.split_once(':')
        .map_or_else(|| spec.to_string(), |(name, _)| format!("{name}:…"))
}

/// Warnings for the secrets `cli` carries as flags, to log at start.
pub fn command_line_warnings(cli: &Cli) -> Vec<String> {
    let mut warnings = Vec::new();
    if !cli.users.is_empty() {
        warnings.push(format!(
            "--user puts passwords on the command line, where every user of this host can \
             read them (ps); use --users-file, {USERS_ENV} or the config file's [[users]]"
        ));
    }
    if cli.admin_token.is_some() {
        warnings.push(format!(
            "--admin-token puts the token on the command line, where every user of this host \
             can read it (ps); use --admin-token-file, {ADMIN_TOKEN_ENV} or [admin] token"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_lines_skip_comments_and_keep_colons_in_passwords() {
        let users = parse_user_lines("# accounts\n\napp:s3:cret\r\nro:*AB\n", "x").unwrap();
        assert_eq!(
            users,
            vec![
                ("app".to_string(), "s3:cret".to_string()),
                ("ro".to_string(), "*AB".to_string())
            ]
        );
        let err = parse_user_lines("app\n", "--users-file f").unwrap_err();
        assert!(err.to_string().contains("--users-file f"), "{err}");
        let err = parse_user(":secret", "--user").unwrap_err().to_string();
        assert!(!err.contains("secret'"), "{err}");
    }
}
