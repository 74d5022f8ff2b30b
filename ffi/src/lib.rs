//! libllmrt: the C ABI over the llmrt runtime.
