//! llm-train: training, import and export of .llm models.

pub mod import;
pub mod quantize;
