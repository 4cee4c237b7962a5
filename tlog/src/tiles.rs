//! C2SP tlog-tiles: tiles of height 8 and their paths.
//!
//! A tile at level `L`, index `N` lists up to 256 consecutive hashes at tree level `8·L`: at level
//! 0 the leaf hashes, above each hash is the root of a full tile below. A full tile has 256
//! hashes (8 192 bytes); the rightmost tile of each level is partial (1 to 255 hashes) until it
//! fills. Paths are `tile/<L>/<N>[.p/<W>]`, `N` in zero-padded groups of three digits, all but the
//! last prefixed with `x` (`x001/x234/067`).
//!
//! `tlog_tiles` knows the geometry but speaks Go sumdb's paths (`tile/<H>/<L>/...`, with the
//! height) and panics on a level above 63 or a width of 0 in a path: a client's path is checked
//! here first, then handed to the crate with the height put back.

use tlog_tiles::{HASH_SIZE, Tile};

use crate::error::{Error, Result};

/// The tile height of this log (C2SP fixes it at 8).
pub const HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const FULL_WIDTH: u32 = 1 << HEIGHT;
/// Bytes of a full tile.
pub const FULL_BYTES: usize = FULL_WIDTH as usize * HASH_SIZE;

/// Where a tile sits in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub level: u8,
    pub index: u64,
}

impl TileId {
    pub fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }
}

/// A tile as a client asks for it: the full tile, or the first `width` hashes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRequest {
    pub id: TileId,
    /// 1 to 255 for a partial tile, 256 for a full one.
    pub width: u32,
}

impl TileRequest {
    /// Parses `tile/<L>/<N>[.p/<W>]` (without a leading slash). Entry bundles
    /// (`tile/entries/...`) are not served: the entries are the users' data.
    pub fn parse(path: &str) -> Result<Self> {
        let bad = |reason: &str| Error::TilePath {
            path: path.chars().take(80).collect(),
            reason: reason.to_owned(),
        };
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("a tile path starts with tile/"))?;
        let (level_text, _) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected tile/<level>/<index>"))?;
        if level_text == "entries" || level_text == "data" {
            return Err(bad(
                "entry bundles are not served: the log's entries are its users' data",
            ));
        }
        // The crate asserts these ranges (it would panic): check them first.
        let level: u8 = level_text
            .parse()
            .map_err(|_| bad("the level is not a number from 0 to 63"))?;
        if level > 63 {
            return Err(bad("the level is not a number from 0 to 63"));
        }
        if let Some((_, width)) = rest.rsplit_once(".p/") {
            let width: u32 = width
                .parse()
                .map_err(|_| bad("a partial width is a number from 1 to 255"))?;
            if !(1..FULL_WIDTH).contains(&width) {
                return Err(bad("a partial width is a number from 1 to 255"));
            }
        }
        let tile = Tile::from_path(&format!("tile/{HEIGHT}/{rest}"))
            .map_err(|_| bad("not a canonical tile path (tile/<L>/<N>[.p/<W>])"))?;
        if tile.is_data() {
            return Err(bad("entry bundles are not served"));
        }
        Ok(Self {
            id: TileId::new(tile.level(), tile.level_index()),
            width: tile.width(),
        })
    }

    /// The C2SP path of this tile (no leading slash).
    pub fn path(&self) -> String {
        let go_path = self.tile().path();
        // Go sumdb's path carries the height; C2SP's does not.
        match go_path.strip_prefix(&format!("tile/{HEIGHT}/")) {
            Some(rest) => format!("tile/{rest}"),
            None => go_path,
        }
    }

    pub fn is_full(&self) -> bool {
        self.width == FULL_WIDTH
    }

    fn tile(&self) -> Tile {
        Tile::new(
            HEIGHT,
            self.id.level,
            self.id.index,
            self.width.clamp(1, FULL_WIDTH),
            false,
        )
    }

    /// The bytes to serve, from the widest version of the tile stored: its first `width`
    /// hashes, `None` when the stored tile is narrower (not in the tree yet).
    pub fn serve(&self, stored: &[u8]) -> Option<Vec<u8>> {
        let bytes = self.width as usize * HASH_SIZE;
        stored.get(..bytes).map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_in_the_c2sp_form() {
        for (path, level, index, width) in [
            ("tile/0/000", 0, 0, 256),
            ("tile/0/001.p/5", 0, 1, 5),
            ("tile/2/x001/x234/067", 2, 1_234_067, 256),
            ("tile/1/x003/x057/500.p/255", 1, 3_057_500, 255),
        ] {
            let parsed = TileRequest::parse(path).unwrap();
            assert_eq!(parsed.id, TileId::new(level, index), "{path}");
            assert_eq!(parsed.width, width, "{path}");
            assert_eq!(parsed.path(), path);
        }
    }

    #[test]
    fn malformed_paths_are_refused_without_panicking() {
        for path in [
            "tile/64/000",
            "tile/255/000",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/-1",
            "tile/0/1",
            "tile/0/x000/001",
            "tile/8/0/000",
            "tile/entries/000",
            "tile/data/000",
            "tile/0/000.p/05",
            "tile//000",
            "tile/0",
            "tiles/0/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "",
        ] {
            assert!(TileRequest::parse(path).is_err(), "{path}");
        }
    }

    #[test]
    fn a_partial_tile_is_a_prefix_of_the_stored_one() {
        let stored: Vec<u8> = (0..10 * HASH_SIZE).map(|i| i as u8).collect();
        let request = TileRequest::parse("tile/0/000.p/3").unwrap();
        assert_eq!(request.serve(&stored).unwrap(), stored[..3 * HASH_SIZE]);
        let full = TileRequest::parse("tile/0/000").unwrap();
        assert_eq!(full.serve(&stored), None, "narrower than asked");
    }
}
