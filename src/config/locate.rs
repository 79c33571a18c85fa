//! Where in the file: every configuration error as "file:line: `full.key`: what is wrong".
//!
//! [`SourceFile`] is the file being loaded. It deserializes the raw structs and turns a TOML or
//! serde error into a [`ConfigError`] that names the full key (`gis.page_sise`, not serde's bare
//! `page_sise`) and its line, and it gives `resolve` the same `file:line` form for the values
//! it refuses.
//!
//! Keys come from two places, because toml reports two kinds of error:
//! - A value of the wrong shape (an unknown key, a string for a number) fails while serde walks
//!   the document; `serde_path_to_error` records the path it walked, so the key is exact
//!   however it was written (`[gis]` + `page_sise`, `gis.page_sise` at the top, an inline
//!   table).
//! - A syntax error (an unterminated string, a duplicate key) fails while toml parses, before
//!   serde walks anything, so there is no path. The key is read back from the text instead:
//!   the `key = ` on the error's line, under the last `[table]` header above it.
//!
//! Invariant: no message quotes a value from the file beyond what toml itself quotes, so a
//! secret is never echoed by a location.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use super::ConfigError;

/// The configuration file being loaded: its path for messages, its text for line numbers.
pub(super) struct SourceFile<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl SourceFile<'_> {
    /// Deserializes the whole file, refusing it with the key and line of the first problem.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(self.text))
            .map_err(|err| self.deserialize_error(&err))
    }

    /// `file:line` for a byte offset into the file.
    pub fn location_at(&self, offset: usize) -> String {
        format!("{}:{}", self.path.display(), line_of(self.text, offset))
    }

    /// An error at the line holding `span`.
    pub fn at(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError::Invalid {
            location: self.location_at(span.start),
            message,
        }
    }

    /// An error about the file as a whole (a missing key has no line).
    pub fn whole(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            location: self.path.display().to_string(),
            message,
        }
    }

    /// Names the key of a deserialization error: from serde's path when serde got that far,
    /// else from the text of the line (see the module doc).
    fn deserialize_error(&self, err: &serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        let message = err.inner().message().trim_end();
        let Some(span) = err.inner().span() else {
            return self.whole(message.to_owned());
        };
        let message = match key_of_path(err.path()) {
            // serde has no error kinds; this prefix is what `deny_unknown_fields` writes.
            Some(key) if message.starts_with("unknown field `") => {
                format!("unknown key `{key}` ({message})")
            }
            Some(key) => format!("`{key}`: {message}"),
            None => match key_written_at(self.text, span.start) {
                Some(key) => format!("`{key}`: {message}"),
                None => message.to_owned(),
            },
        };
        self.at(span, message)
    }
}

/// The dotted key of a serde path, or `None` for an empty one (a syntax error).
///
/// Only table keys count: `toml::Spanned` adds private fields of its own
/// (`$__serde_spanned_private_value`), and an array index would name the element where the
/// user wrote the key (`gis.home_lcs`, not `gis.home_lcs[0]`).
fn key_of_path(path: &serde_path_to_error::Path) -> Option<String> {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } if !key.starts_with("$__") => Some(key.as_str()),
            _ => None,
        })
        .collect();
    (!keys.is_empty()).then(|| keys.join("."))
}

/// The full key written on the line holding `offset` (`customerio.site_id` for `site_id = `
/// under `[customerio]`), for a syntax error that serde never saw.
fn key_written_at(text: &str, offset: usize) -> Option<String> {
    let key = key_on_line(text, offset)?;
    let (table, header_here) = table_at(text, offset);
    Some(match table {
        Some(table) if header_here.is_none() => format!("{table}.{key}"),
        _ => key,
    })
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line holding `offset`.
fn line_at(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    &text[start..end]
}

/// The dotted name of a `[table]` / `[[table]]` header line, without quotes or spaces.
fn header_name(line: &str) -> Option<String> {
    let line = line.trim_start();
    let rest = line.strip_prefix('[')?;
    let rest = rest.strip_prefix('[').unwrap_or(rest);
    let end = rest.find(']')?;
    Some(
        rest[..end]
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
            .collect(),
    )
}

/// The table in force at `offset` (the last header above it), and the header of the line
/// itself if that line is a header.
fn table_at(text: &str, offset: usize) -> (Option<String>, Option<String>) {
    let here = line_at(text, offset);
    let header_here = header_name(here);
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let table = text[..line_start].lines().rev().find_map(header_name);
    (table, header_here)
}

/// The key of a `key = value` line holding `offset`.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let line = line_at(text, offset);
    let (key, _) = line.split_once('=')?;
    let key: String = key
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
        .collect();
    (!key.is_empty() && !key.starts_with('#')).then_some(key)
}
