//! The text of a PDF (`pdf-extract`), read on the compute pool: parsing is CPU work, and a
//! malformed file that makes the parser panic fails this document only.

use std::panic::AssertUnwindSafe;

use crate::compute::ComputePool;

/// Whether `bytes` look like a PDF (its header), whatever the server called it.
pub fn is_pdf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"%PDF-")
}

/// The text of the PDF in `bytes`.
pub async fn text(compute: &ComputePool, bytes: Vec<u8>) -> Result<String, String> {
    compute
        .run(move || {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                pdf_extract::extract_text_from_mem(&bytes)
            }))
        })
        .await
        .map_err(|_| "the PDF could not be read (the parser failed on it)".to_owned())?
        .map_err(|e| format!("the PDF could not be read: {e}"))
}
