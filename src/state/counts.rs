//! [`Counts`]: how many times each event kind was sent for one application, in the
//! fewest bytes that stay exact.
//!
//! Three million applications are held at once on a large office's no-change run, and
//! their counts are nearly always 0, 1 or 2; thirteen `u32` would be 52 bytes each. A
//! `Counts` keeps them as thirteen `u8` while every count fits one, and switches itself to
//! boxed `u32` (the file format's width) the moment one does not: no count is ever
//! truncated or saturated below `u32::MAX`, which is where the file format stops too.

use std::fmt;
use std::ops::Index;

use crate::model::EventKind;

/// Number of counts: one per [`EventKind`].
const LEN: usize = EventKind::COUNT;

/// Every `u8` as a `u32`, so indexing a narrow `Counts` can return a reference.
static NARROW_AS_U32: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        table[n] = n as u32;
        n += 1;
    }
    table
};

/// How many times each kind of event was sent, indexed by [`EventKind::index`].
///
/// Reads as an array (`counts[i]`, [`Counts::get`]); changes through [`Counts::increment`]
/// and [`Counts::set`]. Converts from and to `[u32; EventKind::COUNT]`.
#[derive(Clone)]
pub struct Counts(Repr);

#[derive(Clone)]
enum Repr {
    /// Every count is at most `u8::MAX` (nearly all applications).
    Narrow([u8; LEN]),
    /// Some count is above `u8::MAX`.
    Wide(Box<[u32; LEN]>),
}

impl Counts {
    /// The count of the event kind at `index`.
    ///
    /// # Panics
    /// When `index` is not below [`EventKind::COUNT`], as an array's indexing does.
    pub fn get(&self, index: usize) -> u32 {
        self[index]
    }

    /// Sets the count at `index`.
    ///
    /// # Panics
    /// When `index` is not below [`EventKind::COUNT`].
    pub fn set(&mut self, index: usize, count: u32) {
        match (&mut self.0, u8::try_from(count)) {
            (Repr::Narrow(narrow), Ok(small)) => narrow[index] = small,
            (Repr::Narrow(narrow), Err(_)) => {
                let mut wide = Box::new(narrow.map(u32::from));
                wide[index] = count;
                self.0 = Repr::Wide(wide);
            }
            (Repr::Wide(wide), _) => wide[index] = count,
        }
    }

    /// Counts one more at `index` (saturating at `u32::MAX`) and returns the new count.
    ///
    /// # Panics
    /// When `index` is not below [`EventKind::COUNT`].
    pub fn increment(&mut self, index: usize) -> u32 {
        let count = self.get(index).saturating_add(1);
        self.set(index, count);
        count
    }

    /// The counts as the file format holds them.
    pub fn to_array(&self) -> [u32; LEN] {
        match &self.0 {
            Repr::Narrow(narrow) => narrow.map(u32::from),
            Repr::Wide(wide) => **wide,
        }
    }
}

impl Default for Counts {
    fn default() -> Self {
        Counts(Repr::Narrow([0; LEN]))
    }
}

impl From<[u32; LEN]> for Counts {
    fn from(counts: [u32; LEN]) -> Self {
        let mut narrow = [0u8; LEN];
        for (slot, &count) in narrow.iter_mut().zip(&counts) {
            match u8::try_from(count) {
                Ok(small) => *slot = small,
                Err(_) => return Counts(Repr::Wide(Box::new(counts))),
            }
        }
        Counts(Repr::Narrow(narrow))
    }
}

impl From<&Counts> for [u32; LEN] {
    fn from(counts: &Counts) -> Self {
        counts.to_array()
    }
}

impl Index<usize> for Counts {
    type Output = u32;

    fn index(&self, index: usize) -> &u32 {
        match &self.0 {
            Repr::Narrow(narrow) => &NARROW_AS_U32[usize::from(narrow[index])],
            Repr::Wide(wide) => &wide[index],
        }
    }
}

impl PartialEq for Counts {
    /// Equal when every count is, whichever way each side holds them.
    fn eq(&self, other: &Self) -> bool {
        self.to_array() == other.to_array()
    }
}

impl Eq for Counts {}

impl fmt::Debug for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_array()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_stay_exact_past_a_byte_and_small_ones_stay_small() {
        assert_eq!(size_of::<Counts>(), 16, "13 counts in 16 bytes, not 52");
        let mut counts = Counts::default();
        assert_eq!(counts.increment(3), 1);
        assert!(matches!(counts.0, Repr::Narrow(_)));
        counts.set(3, 255);
        assert!(matches!(counts.0, Repr::Narrow(_)));
        assert_eq!(counts.increment(3), 256, "widens, never wraps");
        assert!(matches!(counts.0, Repr::Wide(_)));
        assert_eq!(counts[3], 256);
        counts.set(12, u32::MAX);
        assert_eq!(counts.increment(12), u32::MAX, "saturates where u32 does");
        let mut expected = [0u32; LEN];
        expected[3] = 256;
        expected[12] = u32::MAX;
        assert_eq!(counts.to_array(), expected);
        assert_eq!(Counts::from(expected), counts);
        assert_eq!(format!("{:?}", Counts::from([1; LEN]))[..7], *"[1, 1, ");
    }

    #[test]
    fn narrow_and_wide_with_the_same_counts_are_equal() {
        let mut wide = Counts::default();
        wide.set(0, 1000);
        wide.set(0, 2);
        assert!(matches!(wide.0, Repr::Wide(_)));
        let mut narrow = Counts::default();
        narrow.set(0, 2);
        assert_eq!(wide, narrow);
        assert_ne!(Counts::default(), narrow);
    }
}
