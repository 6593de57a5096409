//! `TypedJson<T>`: a JSON request body read by serde straight into `T`, for bodies too large
//! for poem-openapi's `Json<T>`, which builds a `serde_json::Value` tree of the whole body
//! first (a bulk load of 500 documents × 384 floats spends most of its time there). The
//! OpenAPI document still describes `T` through its `Object` derive, so `T`'s serde and
//! poem-openapi attributes must agree (field names, `deny_unknown_fields`).

use poem::{FromRequest, Request, RequestBody, Result};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde::de::DeserializeOwned;

/// A JSON body parsed with serde into `T`; described in the OpenAPI document as `T`.
#[derive(Debug)]
pub struct TypedJson<T>(pub T);

impl<T: Type> Payload for TypedJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        // `application/json` or `application/<anything>+json`, parameters ignored, as `Json`.
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let essence = essence.to_ascii_lowercase();
        essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + DeserializeOwned> ParsePayload for TypedJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        if data.is_empty() {
            return Err(ParseRequestPayloadError {
                reason: "the request body is empty; a JSON object is required".to_owned(),
            }
            .into());
        }
        serde_json::from_slice(&data)
            .map(Self)
            .map_err(|err| ParseRequestPayloadError {
                reason: err.to_string(),
            })
            .map_err(Into::into)
    }
}

poem_openapi::impl_apirequest_for_payload!(TypedJson<T>, T: Type + DeserializeOwned);
