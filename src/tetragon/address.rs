//! Parsing of `--tetragon-address`: Tetragon itself is reached either on a unix
//! socket (its Helm chart default) or on TCP (the binary's default).
use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Where Tetragon's gRPC server listens (or where the fake one should listen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TetragonAddress {
    Unix(PathBuf),
    /// `host:port`, without a scheme.
    Tcp(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("address {0:?} is empty: give unix:///path/to.sock, http://host:port or host:port")]
    Empty(String),
    #[error("address {0:?} has no socket path after unix://: give unix:///var/run/tetragon/tetragon.sock")]
    EmptyUnixPath(String),
    #[error("address {0:?} uses an unsupported scheme: use unix://, http:// or a bare host:port")]
    UnsupportedScheme(String),
    #[error("address {0:?} has no port: give host:port, e.g. localhost:54321")]
    MissingPort(String),
    #[error("address {0:?} is a path: write unix://{0} for a unix socket")]
    BarePath(String),
}

impl TetragonAddress {
    /// Accepts `unix:///path`, `unix:/path`, `http://host:port` and `host:port`.
    pub fn parse(raw: &str) -> Result<Self, AddressError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(AddressError::Empty(raw.to_string()));
        }
        if let Some(rest) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            if rest.is_empty() {
                return Err(AddressError::EmptyUnixPath(raw.to_string()));
            }
            return Ok(Self::Unix(PathBuf::from(rest)));
        }
        if s.starts_with('/') {
            return Err(AddressError::BarePath(raw.to_string()));
        }
        let hostport = if let Some(rest) = s.strip_prefix("http://") {
            rest.trim_end_matches('/')
        } else if s.contains("://") {
            return Err(AddressError::UnsupportedScheme(raw.to_string()));
        } else {
            s
        };
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(hostport.to_string()))
            }
            _ => Err(AddressError::MissingPort(raw.to_string())),
        }
    }
}

impl fmt::Display for TetragonAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::Tcp(hp) => write!(f, "{hp}"),
        }
    }
}

impl std::str::FromStr for TetragonAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_documented_forms() {
        assert_eq!(
            TetragonAddress::parse("unix:///var/run/tetragon/tetragon.sock").unwrap(),
            TetragonAddress::Unix("/var/run/tetragon/tetragon.sock".into())
        );
        assert_eq!(
            TetragonAddress::parse("http://127.0.0.1:54321").unwrap(),
            TetragonAddress::Tcp("127.0.0.1:54321".into())
        );
        assert_eq!(
            TetragonAddress::parse("localhost:54321").unwrap(),
            TetragonAddress::Tcp("localhost:54321".into())
        );
        assert_eq!(
            TetragonAddress::parse("[::1]:54321").unwrap(),
            TetragonAddress::Tcp("[::1]:54321".into())
        );
    }

    #[test]
    fn rejects_what_cannot_work() {
        assert!(matches!(
            TetragonAddress::parse(""),
            Err(AddressError::Empty(_))
        ));
        assert!(matches!(
            TetragonAddress::parse("unix://"),
            Err(AddressError::EmptyUnixPath(_))
        ));
        assert!(matches!(
            TetragonAddress::parse("https://x:1"),
            Err(AddressError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            TetragonAddress::parse("localhost"),
            Err(AddressError::MissingPort(_))
        ));
        assert!(matches!(
            TetragonAddress::parse("host:notaport"),
            Err(AddressError::MissingPort(_))
        ));
    }
}
