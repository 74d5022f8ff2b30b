//! llm-train: training, import and export of .llm models.
