//! `memory:`, [`eventkv::MemoryKv`] in the list of engines: each opening is a new, empty
//! store.

use eventkv::raw::BoxFuture;
use eventkv::{DynKv, MemoryKv};

use crate::engines::{EngineParts, Scratch, Target};
use crate::error::OpenError;
use crate::url::{Location, Params, parse_url};

pub(crate) const ENTRY: EngineParts = EngineParts {
    forms: "memory:",
    parse,
    scratch: Scratch::Memory { url: "memory:" },
    shared_by_processes: false,
};

/// `memory:`
#[derive(Debug)]
struct Memory;

fn parse(text: &str) -> Result<Box<dyn Target>, String> {
    let url = &parse_url(text)?;
    if !url.path().is_empty() || url.has_host() {
        return Err("memory: takes no path".into());
    }
    Params::of(url).only(&[])?;
    Ok(Box::new(Memory))
}

impl Target for Memory {
    fn location(&self) -> Location {
        Location::Memory
    }

    fn open(&self, _existing: bool) -> BoxFuture<'_, Result<DynKv, OpenError>> {
        Box::pin(async { Ok(DynKv::new(MemoryKv::new())) })
    }

    fn destroy(&self) -> BoxFuture<'_, Result<(), OpenError>> {
        Box::pin(async { Ok(()) })
    }
}
