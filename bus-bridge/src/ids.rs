//! Typed indices. A port, a segment and a link are each a position in
//! the configuration, and a connection is a number per port; none of them
//! may stand for another, so each has its own type, and a table indexed
//! by one ([`IdVec`]) cannot be indexed by another. Plain numbers appear
//! only at the edges (statistics, events, configuration).

use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

/// A type used as an index into an [`IdVec`].
pub(crate) trait Id: Copy {
    /// The position it stands for.
    fn index(self) -> usize;
    /// The id at `index`.
    fn from_index(index: usize) -> Self;
}

macro_rules! index_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) struct $name(pub usize);

        impl Id for $name {
            fn index(self) -> usize {
                self.0
            }
            fn from_index(index: usize) -> Self {
                $name(index)
            }
        }
    };
}

index_type!(
    /// A port: a configured port, then the socketcand ports.
    PortId
);
index_type!(
    /// A segment, in configuration order.
    SegmentId
);
index_type!(
    /// A link between two segments, in configuration order.
    LinkId
);

/// One client connection of a port; a new client gets a new number, so
/// that messages about an old one are told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ConnId(pub u64);

/// A table with one entry per id of type `I`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdVec<I, T> {
    items: Vec<T>,
    _id: PhantomData<fn(I)>,
}

impl<I: Id, T> IdVec<I, T> {
    /// Entry `i` is `items[i]`.
    pub fn from_vec(items: Vec<T>) -> Self {
        IdVec {
            items,
            _id: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn ids(&self) -> impl Iterator<Item = I> + use<I, T> {
        (0..self.items.len()).map(I::from_index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// The entries with their ids.
    pub fn enumerate(&self) -> impl Iterator<Item = (I, &T)> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, t)| (I::from_index(i), t))
    }
}

impl<I: Id, T> FromIterator<T> for IdVec<I, T> {
    fn from_iter<It: IntoIterator<Item = T>>(iter: It) -> Self {
        IdVec::from_vec(iter.into_iter().collect())
    }
}

impl<I: Id, T> Index<I> for IdVec<I, T> {
    type Output = T;
    fn index(&self, id: I) -> &T {
        &self.items[id.index()]
    }
}

impl<I: Id, T> IndexMut<I> for IdVec<I, T> {
    fn index_mut(&mut self, id: I) -> &mut T {
        &mut self.items[id.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_indexed_by_its_own_id() {
        let mut t: IdVec<PortId, &str> = ["a", "b"].into_iter().collect();
        t[PortId(1)] = "c";
        assert_eq!(t[PortId(1)], "c");
        assert_eq!(t.ids().collect::<Vec<_>>(), [PortId(0), PortId(1)]);
        assert_eq!(t.len(), 2);
    }
}
