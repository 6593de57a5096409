//! What a collection is made of, checked before anything is created: its distance, the index
//! and its parameters, the column type its dimension needs, and the embedder that turns text
//! queries and documents into vectors.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::VectorError;

/// pgvector's `vector` type indexes up to 2,000 dimensions; past that the collection stores
/// `halfvec`, which indexes up to 4,000.
pub const MAX_VECTOR_INDEX_DIMENSIONS: usize = 2_000;
pub const MAX_HALFVEC_INDEX_DIMENSIONS: usize = 4_000;
/// pgvector's limit for a column of either type.
pub const MAX_DIMENSIONS: usize = 16_000;

/// How closeness is measured, and so which operator and operator class a collection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    Cosine,
    L2,
    InnerProduct,
}

impl Distance {
    pub fn as_str(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::L2 => "l2",
            Distance::InnerProduct => "inner_product",
        }
    }

    /// Also the spellings of KAI-Fusion's nodes (`euclidean`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cosine" => Some(Distance::Cosine),
            "l2" | "euclidean" => Some(Distance::L2),
            "inner_product" | "ip" | "dot" => Some(Distance::InnerProduct),
            _ => None,
        }
    }

    /// pgvector's distance operator: smaller is closer for all three (`<#>` is the negative
    /// inner product).
    pub fn operator(self) -> &'static str {
        match self {
            Distance::Cosine => "<=>",
            Distance::L2 => "<->",
            Distance::InnerProduct => "<#>",
        }
    }

    /// The operator class an index needs to serve `operator` on `storage`.
    pub fn operator_class(self, storage: Storage) -> &'static str {
        match (storage, self) {
            (Storage::Vector, Distance::Cosine) => "vector_cosine_ops",
            (Storage::Vector, Distance::L2) => "vector_l2_ops",
            (Storage::Vector, Distance::InnerProduct) => "vector_ip_ops",
            (Storage::HalfVec, Distance::Cosine) => "halfvec_cosine_ops",
            (Storage::HalfVec, Distance::L2) => "halfvec_l2_ops",
            (Storage::HalfVec, Distance::InnerProduct) => "halfvec_ip_ops",
        }
    }

    /// The score a search reports for `distance` (what the operator returned), larger is
    /// closer: cosine similarity (1 − cosine distance, −1..1), the inner product itself, and
    /// 1 / (1 + Euclidean distance) for l2 (0..1].
    pub fn score(self, distance: f64) -> f64 {
        match self {
            Distance::Cosine => 1.0 - distance,
            Distance::InnerProduct => -distance,
            Distance::L2 => 1.0 / (1.0 + distance),
        }
    }
}

/// The approximate index a collection gets once it holds enough rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    Hnsw,
    Ivfflat,
    /// Exact search only.
    None,
}

impl IndexKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Hnsw => "hnsw",
            IndexKind::Ivfflat => "ivfflat",
            IndexKind::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hnsw" => Some(IndexKind::Hnsw),
            "ivfflat" => Some(IndexKind::Ivfflat),
            "none" => Some(IndexKind::None),
            _ => None,
        }
    }
}

/// The column type of a collection's embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Vector,
    /// Half-precision, for more dimensions than `vector` can index.
    HalfVec,
}

impl Storage {
    pub fn for_dimension(dimension: usize) -> Self {
        if dimension > MAX_VECTOR_INDEX_DIMENSIONS {
            Storage::HalfVec
        } else {
            Storage::Vector
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            Storage::Vector => "vector",
            Storage::HalfVec => "halfvec",
        }
    }
}

/// Index parameters, pgvector's defaults when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexParams {
    /// HNSW: links per node (2..100, default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<u32>,
    /// HNSW: candidate list while building (4..1000, at least 2·m, default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construction: Option<u32>,
    /// IVFFlat: clusters (1..32768; default rows / 1000, at least 1, when built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lists: Option<u32>,
    /// HNSW: candidate list per query (1..1000, default 40, at least 2·k).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_search: Option<u32>,
    /// IVFFlat: lists probed per query (1..lists, default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
}

impl IndexParams {
    pub const DEFAULT_M: u32 = 16;
    pub const DEFAULT_EF_CONSTRUCTION: u32 = 64;

    fn check(&self, kind: IndexKind) -> Result<(), VectorError> {
        let m = self.m.unwrap_or(Self::DEFAULT_M);
        let ef = self
            .ef_construction
            .unwrap_or(Self::DEFAULT_EF_CONSTRUCTION);
        if !(2..=100).contains(&m) {
            return Err(invalid("index_params.m must be between 2 and 100"));
        }
        if !(4..=1000).contains(&ef) {
            return Err(invalid(
                "index_params.ef_construction must be between 4 and 1000",
            ));
        }
        if kind == IndexKind::Hnsw && ef < 2 * m {
            return Err(invalid(format!(
                "index_params.ef_construction ({ef}) must be at least twice m ({m})"
            )));
        }
        if let Some(lists) = self.lists
            && !(1..=32_768).contains(&lists)
        {
            return Err(invalid("index_params.lists must be between 1 and 32768"));
        }
        if let Some(ef_search) = self.ef_search
            && !(1..=1000).contains(&ef_search)
        {
            return Err(invalid("index_params.ef_search must be between 1 and 1000"));
        }
        if let Some(probes) = self.probes
            && !(1..=32_768).contains(&probes)
        {
            return Err(invalid("index_params.probes must be between 1 and 32768"));
        }
        Ok(())
    }
}

/// Which embeddings model turns a collection's text into vectors: a credential's server
/// (`openai` or `openai_compatible`) or, without one, the deployment's embeddings server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    pub model: String,
}

/// A collection as asked for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSpec {
    pub name: String,
    pub dimension: usize,
    pub distance: Distance,
    pub index: IndexKind,
    pub params: IndexParams,
    /// `None`: text is embedded by the deployment's embeddings server with its default model.
    pub embedder: Option<EmbedderSpec>,
}

impl CollectionSpec {
    /// Checks everything the database would otherwise refuse later, naming the field.
    pub fn check(&self) -> Result<(), VectorError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 255 {
            return Err(invalid("collection_name must be 1 to 255 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid(
                "collection_name must not contain control characters",
            ));
        }
        if !(1..=MAX_DIMENSIONS).contains(&self.dimension) {
            return Err(invalid(format!(
                "embedding_dimension must be between 1 and {MAX_DIMENSIONS}"
            )));
        }
        if self.index != IndexKind::None && self.dimension > MAX_HALFVEC_INDEX_DIMENSIONS {
            return Err(invalid(format!(
                "an {} index covers at most {MAX_HALFVEC_INDEX_DIMENSIONS} dimensions (got \
                 {}); use index_type none for exact search",
                self.index.as_str(),
                self.dimension
            )));
        }
        self.params.check(self.index)?;
        if let Some(embedder) = &self.embedder
            && embedder.model.trim().is_empty()
        {
            return Err(invalid("embedder.model must not be empty"));
        }
        Ok(())
    }

    pub fn storage(&self) -> Storage {
        Storage::for_dimension(self.dimension)
    }
}

/// A metadata filter: a JSON object the chunk's metadata must contain.
pub fn check_filter(filter: &Value) -> Result<(), VectorError> {
    match filter {
        Value::Object(_) => Ok(()),
        _ => Err(invalid(
            "filter must be a JSON object the metadata must contain, e.g. {\"lang\": \"en\"}",
        )),
    }
}

fn invalid(message: impl Into<String>) -> VectorError {
    VectorError::Invalid(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dimension: usize, index: IndexKind) -> CollectionSpec {
        CollectionSpec {
            name: "docs".into(),
            dimension,
            distance: Distance::Cosine,
            index,
            params: IndexParams::default(),
            embedder: None,
        }
    }

    #[test]
    fn past_two_thousand_dimensions_a_collection_stores_half_precision() {
        assert_eq!(spec(2_000, IndexKind::Hnsw).storage(), Storage::Vector);
        assert_eq!(spec(2_001, IndexKind::Hnsw).storage(), Storage::HalfVec);
        assert_eq!(
            Distance::Cosine.operator_class(Storage::HalfVec),
            "halfvec_cosine_ops"
        );
        assert!(spec(3_072, IndexKind::Hnsw).check().is_ok());
        let too_wide = spec(5_000, IndexKind::Hnsw).check().unwrap_err();
        assert!(
            too_wide.to_string().contains("index_type none"),
            "{too_wide}"
        );
        assert!(spec(5_000, IndexKind::None).check().is_ok());
    }

    #[test]
    fn index_parameters_are_checked_naming_the_field() {
        let mut bad = spec(8, IndexKind::Hnsw);
        bad.params.m = Some(32);
        bad.params.ef_construction = Some(40);
        let error = bad.check().unwrap_err().to_string();
        assert!(error.contains("ef_construction (40)"), "{error}");
        bad.params = IndexParams {
            lists: Some(0),
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("lists"));
    }

    #[test]
    fn scores_grow_with_closeness_for_every_distance() {
        for distance in [Distance::Cosine, Distance::L2, Distance::InnerProduct] {
            assert!(distance.score(0.1) > distance.score(0.5), "{distance:?}");
        }
        assert_eq!(Distance::Cosine.score(0.0), 1.0);
        assert_eq!(Distance::L2.score(0.0), 1.0);
        assert_eq!(Distance::InnerProduct.score(-0.75), 0.75);
        assert_eq!(Distance::parse("euclidean"), Some(Distance::L2));
    }
}
