//! `GET /v1/models` and `GET /v1/models/{name}`, answered from the config.
//!
//! A key sees only the models its allow-list admits; asking for another one is a
//! 404, the same as for a model that does not exist, so keys cannot probe names.

use bytes::Bytes;
use serde::Serialize;

use crate::config::{Config, VirtualKey};
use crate::errors::ApiError;

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

fn object(name: &str, created: u64) -> ModelObject<'_> {
    ModelObject {
        id: name,
        object: "model",
        created,
        owned_by: "switchyard",
    }
}

/// The models `key` may use, in name order.
pub fn list(config: &Config, key: &VirtualKey, created: u64) -> Bytes {
    let data = config
        .models
        .keys()
        .filter(|name| key.allows(name))
        .map(|name| object(name, created))
        .collect();
    let list = ModelList {
        object: "list",
        data,
    };
    Bytes::from(serde_json::to_vec(&list).unwrap_or_default())
}

/// One model, if it exists and `key` may see it.
pub fn get(config: &Config, key: &VirtualKey, name: &str, created: u64) -> Result<Bytes, ApiError> {
    if !config.models.contains_key(name) || !key.allows(name) {
        return Err(ApiError::model_not_found(name));
    }
    Ok(Bytes::from(
        serde_json::to_vec(&object(name, created)).unwrap_or_default(),
    ))
}
