//! `llm-train`: the command line. Each subcommand's arguments and work live in the
//! library (`llm_train::…::run_*`); this file only dispatches.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Train, import, export and quantise small transformer language models.
#[derive(Parser)]
#[command(name = "llm-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
enum Command {
    /// Print the resolved configuration of a preset and its parameter/memory estimate.
    Config(llm_train::config::ConfigArgs),
    /// Tokenize text (char, byte or BPE) into llm.c token shards and a tokenizer.json.
    Tokenize(llm_train::tokenize::TokenizeArgs),
    /// Train a model (from scratch, --resume, or --init-from) into a run folder.
    Train(llm_train::train::TrainArgs),
    /// Learning-rate range test: ramp the rate exponentially on a fresh model, stop
    /// at divergence, suggest rates and plot loss against lr.
    LrFind(llm_train::lr_find::LrFindArgs),
    /// Train a grid of settings over one base config, one resumable run folder per
    /// point, with summary.md/summary.csv and curves.png.
    Sweep(llm_train::sweep::SweepArgs),
    /// Export a run's latest checkpoint to a .llm file.
    Export(llm_train::export::ExportArgs),
    /// Write an .llm model as a llama.cpp GGUF (llama architecture).
    ExportGguf(llm_train::export_gguf::ExportGgufArgs),
    /// Continue a prompt with a run's latest checkpoint.
    Sample(llm_train::train::SampleArgs),
    /// Plot a run's train and validation loss against steps (PNG).
    Plot(llm_train::plot::PlotArgs),
    /// Pictures of a model: token embeddings (PCA) or attention maps of a prompt.
    Viz(llm_train::viz::VizArgs),
    /// Convert a llama2.c, llm.c, Hugging Face safetensors or GGUF model to .llm.
    Import(llm_train::import::ImportArgs),
    /// Re-quantise the weight matrices of a .llm file.
    Quantize(llm_train::quantize::QuantizeArgs),
}

fn main() -> ExitCode {
    llmrt::sys::restore_sigpipe();
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Config(a) => llm_train::config::run_config(a),
        Command::Tokenize(a) => llm_train::tokenize::run_tokenize(a),
        Command::Train(a) => llm_train::train::run_train(a),
        Command::LrFind(a) => llm_train::lr_find::run_lr_find(a),
        Command::Sweep(a) => llm_train::sweep::run_sweep(a),
        Command::Export(a) => llm_train::export::run_export(a),
        Command::ExportGguf(a) => llm_train::export_gguf::run_export_gguf(a),
        Command::Sample(a) => llm_train::train::run_sample(a),
        Command::Plot(a) => llm_train::plot::run_plot(a),
        Command::Viz(a) => llm_train::viz::run_viz(a),
        Command::Import(a) => llm_train::import::run_import(a),
        Command::Quantize(a) => llm_train::quantize::run_quantize(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
