//! Opening a GPU: every entry into CUDA checks first that the driver library is there
//! (cudarc panics when `libcuda` is missing), so a machine without a GPU gets one
//! [`CudaError::NoDevice`] line. Kernel modules are compiled on first use for the
//! device's own architecture, cached on disk and kept loaded per (file, variant).

use crate::cache;
use crate::error::CudaError;
use crate::nvrtc::{self, Arch};
use crate::source::{KernelFile, Variant};
use cudarc::driver::{sys, CudaContext, CudaFunction, CudaModule, CudaStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One loaded module: the source it was built from, so two libraries' files of the
/// same name (the trainer's and the runtime's `rmsnorm`, say) do not take each
/// other's module, and the functions looked up in it so far (a launch then costs no
/// driver lookup).
struct Loaded {
    source: &'static str,
    module: Arc<CudaModule>,
    functions: HashMap<String, CudaFunction>,
}

/// One GPU, its stream and its loaded kernel modules.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    arch: Arch,
    name: String,
    modules: Mutex<HashMap<(&'static str, Variant), Vec<Loaded>>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({}, {})", self.name, self.arch.name())
    }
}

/// Whether `libcuda` can be loaded (the check cudarc itself does not make).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the candidate names; no symbol is called.
    unsafe { sys::is_culib_present() }
}

impl CudaDevice {
    /// Opens GPU `ordinal` on its default stream; without a driver or device, a
    /// [`CudaError::NoDevice`].
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        Self::open_on(ordinal, false)
    }

    /// [`CudaDevice::open`] with a stream of its own instead of the default stream:
    /// a CUDA graph can only be captured from such a stream (the runtime's decode
    /// step, [`crate::gpu::Gpu::capture`]).
    pub fn open_own_stream(ordinal: usize) -> Result<Self, CudaError> {
        Self::open_on(ordinal, true)
    }

    fn open_on(ordinal: usize, own_stream: bool) -> Result<Self, CudaError> {
        if !driver_present() {
            return Err(CudaError::NoDevice(
                "libcuda.so could not be loaded (no NVIDIA driver installed?)".into(),
            ));
        }
        let count = CudaContext::device_count()
            .map_err(|e| CudaError::NoDevice(format!("the driver did not initialise: {e}")))?;
        if count <= 0 {
            return Err(CudaError::NoDevice("the driver sees no CUDA device".into()));
        }
        if ordinal >= count as usize {
            return Err(CudaError::NoDevice(format!(
                "device {ordinal} asked for, but only {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal)?;
        // One stream orders every launch, so cudarc's per-buffer events are not needed.
        // SAFETY: no buffer exists yet on this context.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability()?;
        let arch = Arch {
            major: major.max(0) as u32,
            minor: minor.max(0) as u32,
        };
        let name = ctx.name()?;
        let stream = if own_stream {
            ctx.new_stream()?
        } else {
            ctx.default_stream()
        };
        Ok(CudaDevice {
            ctx,
            stream,
            arch,
            name,
            modules: Mutex::new(HashMap::new()),
        })
    }

    /// The device's architecture (kernels are compiled for it).
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The device's name, e.g. `NVIDIA H200`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream every launch goes to.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The CUDA context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Free and total device memory, in bytes.
    pub fn memory(&self) -> Result<(usize, usize), CudaError> {
        Ok(self.ctx.mem_get_info()?)
    }

    /// Refuses `needed` bytes (the caller's memory estimate for `what`) when the device
    /// has less free, before anything is allocated.
    pub fn check_fits(&self, what: &str, needed: usize) -> Result<(), CudaError> {
        let (free, _) = self.memory()?;
        if needed > free {
            return Err(CudaError::OutOfMemory {
                what: what.to_string(),
                needed,
                free,
            });
        }
        Ok(())
    }

    /// Waits for every queued launch and surfaces any asynchronous error.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        Ok(self.stream.synchronize()?)
    }

    /// Function `name` of `file` built with `variant`, compiling (or loading from the
    /// disk cache) the module on first use and looking the function up once.
    pub fn function(
        &self,
        file: &'static KernelFile,
        variant: Variant,
        name: &str,
    ) -> Result<CudaFunction, CudaError> {
        if !file.functions.contains(&name) {
            return Err(CudaError::Shape(format!(
                "{}.cu has no kernel {name}",
                file.name
            )));
        }
        let mut modules = self
            .modules
            .lock()
            .map_err(|_| CudaError::Driver("kernel module table poisoned".into()))?;
        let same = |src: &str| std::ptr::eq(src, file.source) || src == file.source;
        let loaded = modules.entry((file.name, variant)).or_default();
        let at = match loaded.iter().position(|l| same(l.source)) {
            Some(at) => at,
            None => {
                loaded.push(Loaded {
                    source: file.source,
                    module: self.load(file, variant)?,
                    functions: HashMap::new(),
                });
                loaded.len() - 1
            }
        };
        let l = &mut loaded[at];
        if let Some(f) = l.functions.get(name) {
            return Ok(f.clone());
        }
        let f = l.module.load_function(name)?;
        l.functions.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Compiles `file` with `variant` for this device (or takes the CUBIN from the
    /// disk cache) and loads it.
    fn load(
        &self,
        file: &'static KernelFile,
        variant: Variant,
    ) -> Result<Arc<CudaModule>, CudaError> {
        let version = nvrtc::load()?;
        let opts = nvrtc::options(variant, self.arch, &nvrtc::include_dirs(), false);
        let key = cache::key(version, &opts, &nvrtc::full_source(file));
        let cubin = match cache::load(&key) {
            Some(c) => c,
            None => {
                let c = nvrtc::compile(file, variant, self.arch, false)?.cubin;
                // A read-only cache only costs a recompile next time.
                if let Err(e) = cache::store(&key, &c) {
                    eprintln!("warning: {e}");
                }
                c
            }
        };
        Ok(self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))?)
    }
}
