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

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::one_page_pdf;

    #[tokio::test]
    async fn a_pdfs_text_is_read_and_a_broken_one_is_an_error() {
        let pool = ComputePool::default();
        let pdf = one_page_pdf("Hello from a PDF");
        assert!(is_pdf(&pdf));
        let text = text(&pool, pdf).await.unwrap();
        assert!(text.contains("Hello from a PDF"), "{text:?}");
        let broken = text_of_broken(&pool).await;
        assert!(broken.starts_with("the PDF could not be read"), "{broken}");
    }

    async fn text_of_broken(pool: &ComputePool) -> String {
        text(pool, b"%PDF-1.4\nnot really a pdf".to_vec())
            .await
            .unwrap_err()
    }
}
