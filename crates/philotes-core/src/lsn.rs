//! PostgreSQL log sequence numbers.
//!
//! An LSN is a 64-bit position in the write-ahead log, printed by PostgreSQL as two
//! hexadecimal halves (`16/B374D848`). Philotes keeps LSNs as plain `u64`s so they compare and
//! sort like the positions they are.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind};

/// A position in PostgreSQL's write-ahead log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The zero position (`0/0`), which PostgreSQL uses for "none".
    pub const ZERO: Lsn = Lsn(0);

    /// The position as a signed 64-bit integer, as stored in Iceberg `long` columns.
    /// LSNs above `i64::MAX` do not occur in practice (that is 8 EiB of WAL).
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            Error::new(
                ErrorKind::Invalid,
                format!("`{s}` is not an LSN: expected two hexadecimal numbers like `16/B374D848`"),
            )
        };
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Lsn(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_parses_like_postgres() {
        let lsn: Lsn = "16/B374D848".parse().unwrap_or_default();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
    }

    #[test]
    fn rejects_garbage() {
        assert!("16B374D848".parse::<Lsn>().is_err());
        assert!("x/1".parse::<Lsn>().is_err());
        assert!("1/100000000".parse::<Lsn>().is_err());
    }
}
