//! Use cases, written only against the two ports.
mod gc;
mod packages;
mod projects;
mod uploads;

pub use gc::{GcReport, Hold};
pub use packages::{BlobRef, NewVersion, PageOf, PageRequest, MAX_PAGE_SIZE};
pub use projects::{NewProject, NewRepository};
pub use uploads::*;

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use crate::store::{BlobStore, Item, Key, Table};
use crate::{Error, Result};

/// The domain's entry point: every surface calls these use cases.
#[derive(Clone)]
pub struct Registry {
    pub table: Arc<dyn Table>,
    pub blobs: Arc<dyn BlobStore>,
}

impl Registry {
    pub fn new(table: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) -> Self {
        Registry { table, blobs }
    }
}

/// Serialises a domain value into an item under `key`.
pub fn to_item<T: Serialize>(key: &Key, value: &T) -> Result<Item> {
    let mut item = key.item();
    match serde_json::to_value(value).map_err(Error::internal)? {
        serde_json::Value::Object(m) => item.extend(m),
        _ => return Err(Error::Internal("a domain value must serialise to an object".into())),
    }
    Ok(item)
}

/// Reads a domain value back from an item, ignoring the key attributes.
pub fn from_item<T: DeserializeOwned>(item: Item) -> Result<T> {
    serde_json::from_value(serde_json::Value::Object(item)).map_err(|e| Error::Internal(format!("corrupt item: {e}")))
}
