//! One interface over where the runtime's kernels run: a CUDA GPU, or (feature `emu`)
//! the CPU emulator. A forward pass written against [`Gpu`] and [`Buffer`] runs
//! unchanged on either, so the whole GPU model (its buffers, offsets and order of
//! launches, not only each kernel) is tested against the CPU on machines without a
//! GPU, and the GPU run only has to confirm it.
//!
//! Buffers are untyped bytes: the launchers say what they hold. A launch passes
//! [`KArg`]s, checked against the kernel's source signature before it runs, as the
//! trainer's [`crate::launch::Launch`] does. On the GPU everything is queued on the
//! device's stream; in the emulator a launch runs to completion before it returns.

use crate::device::CudaDevice;
use crate::error::CudaError;
use crate::source::{check_call, KernelFile, ParamKind, Variant};
use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};

/// Device memory: `len` bytes on the GPU, or in host memory for the emulator.
pub struct Buffer {
    len: usize,
    mem: Mem,
}

enum Mem {
    Cuda(CudaSlice<u8>),
    /// 16-byte words (device allocations are at least that aligned), owned through a
    /// raw pointer because kernels write through addresses taken from `&Buffer`.
    #[cfg(feature = "emu")]
    Host(*mut u128, usize),
}

// SAFETY: a host buffer is owned by its `Buffer` alone (no aliasing pointer is kept
// past a launch); a CUDA slice is `Send` itself.
unsafe impl Send for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        #[cfg(feature = "emu")]
        if let Mem::Host(p, words) = self.mem {
            // SAFETY: `p` came from `Box::into_raw` of a boxed slice of `words` words,
            // and is freed once, here.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, words)) });
        }
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes)", self.len)
    }
}

impl Buffer {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Length in f32 values.
    pub fn len_f32(&self) -> usize {
        self.len / 4
    }
}

/// A captured sequence of launches ([`Gpu::capture`]), replayed with one call.
pub struct Graph(cudarc::driver::CudaGraph);

// SAFETY: a graph is launched only through `&Gpu` calls of its one owner (the
// runtime's context, itself used by one thread at a time); CUDA allows graph objects
// on any thread when calls on one graph are not concurrent, which `Send` without
// `Sync` keeps.
unsafe impl Send for Graph {}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Graph")
    }
}

/// One kernel argument.
#[derive(Clone, Copy, Debug)]
pub enum KArg<'a> {
    /// A buffer's address.
    Buf(&'a Buffer),
    /// A buffer's address plus a byte offset (inside the buffer).
    At(&'a Buffer, usize),
    /// A null pointer (an absent optional buffer).
    Null,
    /// `int`.
    I32(i32),
    /// `long long`.
    I64(i64),
    /// `float`.
    F32(f32),
}

impl KArg<'_> {
    fn kind(&self) -> ParamKind {
        match self {
            KArg::Buf(_) | KArg::At(..) | KArg::Null => ParamKind::Ptr,
            KArg::I32(_) => ParamKind::I32,
            KArg::I64(_) => ParamKind::I64,
            KArg::F32(_) => ParamKind::F32,
        }
    }
}

/// Where kernels run: a GPU, or the CPU emulator.
pub enum Gpu {
    /// A CUDA device.
    Cuda(CudaDevice),
    /// The CPU emulator (`emu`): kernels built by g++, one thread per CUDA thread.
    #[cfg(feature = "emu")]
    Emulated(Emulator),
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.name())
    }
}

/// The emulator's state: each (file, variant) built once.
#[cfg(feature = "emu")]
pub struct Emulator {
    modules: std::sync::Mutex<EmuModules>,
}

#[cfg(feature = "emu")]
type EmuModules = std::collections::HashMap<
    (&'static str, usize, Vec<(&'static str, i32)>),
    std::sync::Arc<crate::emu::EmuModule>,
>;

impl Gpu {
    /// GPU `ordinal`, on a stream of its own (so that [`Gpu::capture`] can record
    /// graphs); without a driver or device, a one-line [`CudaError::NoDevice`].
    pub fn cuda(ordinal: usize) -> Result<Gpu, CudaError> {
        Ok(Gpu::Cuda(CudaDevice::open_own_stream(ordinal)?))
    }

    /// The CPU emulator; `NoDevice` with the reason when there is no C++20 compiler.
    #[cfg(feature = "emu")]
    pub fn emulated() -> Result<Gpu, CudaError> {
        crate::emu::compiler().map_err(|e| CudaError::NoDevice(format!("emulator: {e}")))?;
        Ok(Gpu::Emulated(Emulator {
            modules: std::sync::Mutex::new(Default::default()),
        }))
    }

    /// The device's name (`NVIDIA H200 (sm_90)`, or `emulator`).
    pub fn name(&self) -> String {
        match self {
            Gpu::Cuda(d) => format!("{} ({})", d.name(), d.arch().name()),
            #[cfg(feature = "emu")]
            Gpu::Emulated(_) => "emulator".into(),
        }
    }

    /// The CUDA device, when this is one.
    pub fn device(&self) -> Option<&CudaDevice> {
        match self {
            Gpu::Cuda(d) => Some(d),
            #[cfg(feature = "emu")]
            Gpu::Emulated(_) => None,
        }
    }

    /// `len` zero bytes.
    pub fn alloc(&self, len: usize) -> Result<Buffer, CudaError> {
        let mem = match self {
            Gpu::Cuda(d) => Mem::Cuda(d.stream().alloc_zeros::<u8>(len.max(1))?),
            #[cfg(feature = "emu")]
            Gpu::Emulated(_) => {
                let words = len.div_ceil(16).max(1);
                let b: Box<[u128]> = vec![0u128; words].into_boxed_slice();
                Mem::Host(Box::into_raw(b) as *mut u128, words)
            }
        };
        Ok(Buffer { len, mem })
    }

    /// A buffer holding `bytes`.
    pub fn upload(&self, bytes: &[u8]) -> Result<Buffer, CudaError> {
        let mut b = self.alloc(bytes.len())?;
        self.write(&mut b, 0, bytes)?;
        Ok(b)
    }

    /// A buffer holding `v` (little-endian f32).
    pub fn upload_f32(&self, v: &[f32]) -> Result<Buffer, CudaError> {
        self.upload(&f32_bytes(v))
    }

    /// Copies `bytes` into `buf` from byte `offset`.
    pub fn write(&self, buf: &mut Buffer, offset: usize, bytes: &[u8]) -> Result<(), CudaError> {
        check_range("write", buf, offset, bytes.len())?;
        if bytes.is_empty() {
            return Ok(());
        }
        match (self, &mut buf.mem) {
            (Gpu::Cuda(d), Mem::Cuda(s)) => {
                let mut view = s.slice_mut(offset..offset + bytes.len());
                d.stream().memcpy_htod(bytes, &mut view)?;
            }
            #[cfg(feature = "emu")]
            (Gpu::Emulated(_), Mem::Host(p, _)) => {
                // SAFETY: offset + len ≤ buf.len ≤ the allocation (checked above).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        (*p as *mut u8).add(offset),
                        bytes.len(),
                    )
                };
            }
            #[cfg(feature = "emu")]
            _ => return Err(foreign()),
        }
        Ok(())
    }

    /// Copies `out.len()` bytes of `buf` from byte `offset` into `out` (waiting for
    /// the queued work first).
    pub fn read(&self, buf: &Buffer, offset: usize, out: &mut [u8]) -> Result<(), CudaError> {
        check_range("read", buf, offset, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        match (self, &buf.mem) {
            (Gpu::Cuda(d), Mem::Cuda(s)) => {
                let view = s.slice(offset..offset + out.len());
                d.stream().memcpy_dtoh(&view, out)?;
                d.synchronize()?;
            }
            #[cfg(feature = "emu")]
            (Gpu::Emulated(_), Mem::Host(p, _)) => {
                // SAFETY: as in `write`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        (*p as *const u8).add(offset),
                        out.as_mut_ptr(),
                        out.len(),
                    )
                };
            }
            #[cfg(feature = "emu")]
            _ => return Err(foreign()),
        }
        Ok(())
    }

    /// `n` f32 values of `buf` from value `first`.
    pub fn read_f32(&self, buf: &Buffer, first: usize, n: usize) -> Result<Vec<f32>, CudaError> {
        let mut v = vec![0f32; n];
        self.read_f32_into(buf, first, &mut v)?;
        Ok(v)
    }

    /// [`Gpu::read_f32`] into `out` (its length is the count): no allocation, one copy.
    pub fn read_f32_into(
        &self,
        buf: &Buffer,
        first: usize,
        out: &mut [f32],
    ) -> Result<(), CudaError> {
        // SAFETY: any bytes are a valid f32, the view covers exactly `out`'s memory and
        // lives only for this call. Device and host are little-endian (every CUDA host).
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                out.as_mut_ptr().cast::<u8>(),
                std::mem::size_of_val(out),
            )
        };
        self.read(buf, 4 * first, bytes)
    }

    /// Copies `len` bytes of `src` from byte `src_off` to `dst` from byte `dst_off`,
    /// on the device (the two ranges may be in one buffer but must not overlap).
    pub fn copy(
        &self,
        dst: &Buffer,
        dst_off: usize,
        src: &Buffer,
        src_off: usize,
        len: usize,
    ) -> Result<(), CudaError> {
        check_range("copy to", dst, dst_off, len)?;
        check_range("copy from", src, src_off, len)?;
        if std::ptr::eq(dst, src) && dst_off < src_off + len && src_off < dst_off + len {
            return Err(CudaError::Shape("copy between overlapping ranges".into()));
        }
        if len == 0 {
            return Ok(());
        }
        match self {
            Gpu::Cuda(d) => {
                let stream = d.stream();
                let (to, from) = (cuda_addr(dst, stream)?, cuda_addr(src, stream)?);
                // SAFETY: both ranges lie inside live device buffers (checked above)
                // and do not overlap; the copy is ordered on the device's stream.
                unsafe {
                    cudarc::driver::result::memcpy_dtod_async(
                        to + dst_off as u64,
                        from + src_off as u64,
                        len,
                        stream.cu_stream(),
                    )
                }?;
            }
            #[cfg(feature = "emu")]
            Gpu::Emulated(_) => {
                let (to, from) = (host_addr(dst)?, host_addr(src)?);
                // SAFETY: as above, in host memory.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        from.cast::<u8>().add(src_off),
                        to.cast::<u8>().add(dst_off),
                        len,
                    )
                };
            }
        }
        Ok(())
    }

    /// Queues kernel `name` of `file` (built with `variant`) over `cfg`, after checking
    /// `args` against its parameter list and every buffer offset against its buffer.
    pub fn launch(
        &self,
        file: &'static KernelFile,
        variant: Variant,
        name: &str,
        cfg: LaunchConfig,
        args: &[KArg<'_>],
    ) -> Result<(), CudaError> {
        let kinds: Vec<ParamKind> = args.iter().map(KArg::kind).collect();
        check_call(file, name, &kinds)?;
        for a in args {
            if let KArg::At(b, off) = a {
                check_range(name, b, *off, 0)?;
            }
        }
        match self {
            Gpu::Cuda(d) => {
                let func = d.function(file, variant, name)?;
                let stream = d.stream();
                let mut ptrs = Vec::with_capacity(args.len());
                for a in args {
                    ptrs.push(match a {
                        KArg::Buf(b) => cuda_addr(b, stream)?,
                        KArg::At(b, off) => cuda_addr(b, stream)? + *off as u64,
                        _ => 0u64,
                    });
                }
                let mut l = stream.launch_builder(&func);
                for (a, p) in args.iter().zip(&ptrs) {
                    match a {
                        KArg::Buf(_) | KArg::At(..) | KArg::Null => l.arg(p),
                        KArg::I32(v) => l.arg(v),
                        KArg::I64(v) => l.arg(v),
                        KArg::F32(v) => l.arg(v),
                    };
                }
                // SAFETY: the arguments match the kernel's parameters in order and kind
                // (checked above); pointers are device addresses inside live buffers,
                // and the launchers check each buffer's length against the sizes they
                // pass.
                unsafe { l.launch(cfg) }?;
                Ok(())
            }
            #[cfg(feature = "emu")]
            Gpu::Emulated(e) => {
                use crate::emu::EmuArg;
                let module = e.module(file, variant)?;
                let mut eargs = Vec::with_capacity(args.len());
                for a in args {
                    eargs.push(match a {
                        KArg::Buf(b) => EmuArg::P(host_addr(b)?),
                        KArg::At(b, off) => EmuArg::P(host_addr(b)?.wrapping_byte_add(*off)),
                        KArg::Null => EmuArg::P(std::ptr::null_mut()),
                        KArg::I32(v) => EmuArg::I(*v),
                        KArg::I64(v) => EmuArg::L(*v),
                        KArg::F32(v) => EmuArg::F(*v),
                    });
                }
                module.launch(name, cfg, &eargs);
                Ok(())
            }
        }
    }

    /// Records the launches and device copies `work` queues as a CUDA graph instead of
    /// running them, for [`Gpu::replay`]. Host copies ([`Gpu::write`], [`Gpu::read`])
    /// must stay outside `work`: a graph replays device work only, so its inputs are
    /// written into device buffers before each replay. The emulator records nothing
    /// (`None`): callers run `work` directly there.
    pub fn capture(
        &self,
        work: impl FnOnce() -> Result<(), CudaError>,
    ) -> Result<Option<Graph>, CudaError> {
        match self {
            Gpu::Cuda(d) => {
                use cudarc::driver::sys;
                let stream = d.stream();
                stream
                    .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
                let done = work();
                // End the capture whatever `work` returned, so the stream is usable.
                let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0));
                done?;
                Ok(graph?.map(Graph))
            }
            #[cfg(feature = "emu")]
            Gpu::Emulated(_) => Ok(None),
        }
    }

    /// Queues one replay of `graph` on the device's stream.
    pub fn replay(&self, graph: &Graph) -> Result<(), CudaError> {
        Ok(graph.0.launch()?)
    }

    /// Waits for every queued launch and surfaces any asynchronous error.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        match self {
            Gpu::Cuda(d) => d.synchronize(),
            #[cfg(feature = "emu")]
            Gpu::Emulated(_) => Ok(()),
        }
    }

    /// Refuses `needed` bytes for `what` when the device has less free (the emulator
    /// has the host's memory and never refuses here).
    pub fn check_fits(&self, what: &str, needed: usize) -> Result<(), CudaError> {
        match self {
            Gpu::Cuda(d) => d.check_fits(what, needed),
            #[cfg(feature = "emu")]
            Gpu::Emulated(_) => Ok(()),
        }
    }
}

#[cfg(feature = "emu")]
impl Emulator {
    fn module(
        &self,
        file: &'static KernelFile,
        variant: Variant,
    ) -> Result<std::sync::Arc<crate::emu::EmuModule>, CudaError> {
        let key = (file.name, file.source.as_ptr() as usize, variant.to_vec());
        let mut m = self
            .modules
            .lock()
            .map_err(|_| CudaError::Driver("emulator module table poisoned".into()))?;
        if let Some(x) = m.get(&key) {
            return Ok(x.clone());
        }
        let built = crate::emu::EmuModule::build(file, variant)
            .map_err(|e| CudaError::NoDevice(format!("emulator: {e}")))?;
        let built = std::sync::Arc::new(built);
        m.insert(key, built.clone());
        Ok(built)
    }
}

/// `v` as little-endian bytes.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn check_range(what: &str, b: &Buffer, offset: usize, len: usize) -> Result<(), CudaError> {
    if offset.checked_add(len).is_none_or(|end| end > b.len) {
        return Err(CudaError::Shape(format!(
            "{what}: bytes {offset}..+{len} outside a buffer of {}",
            b.len
        )));
    }
    Ok(())
}

fn cuda_addr(
    b: &Buffer,
    stream: &std::sync::Arc<cudarc::driver::CudaStream>,
) -> Result<u64, CudaError> {
    match &b.mem {
        Mem::Cuda(s) => Ok(s.device_ptr(stream).0),
        #[cfg(feature = "emu")]
        Mem::Host(..) => Err(foreign()),
    }
}

#[cfg(feature = "emu")]
fn host_addr(b: &Buffer) -> Result<*mut std::ffi::c_void, CudaError> {
    match b.mem {
        Mem::Host(p, _) => Ok(p.cast()),
        Mem::Cuda(_) => Err(foreign()),
    }
}

#[cfg(feature = "emu")]
fn foreign() -> CudaError {
    CudaError::Shape("a buffer of one device passed to another".into())
}

#[cfg(all(test, feature = "emu"))]
mod tests {
    use super::*;

    #[test]
    fn emulated_buffers_round_trip_and_check_ranges() {
        let Ok(g) = Gpu::emulated() else {
            eprintln!("skipped: no C++20 compiler");
            return;
        };
        let v: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut b = g.upload_f32(&v).unwrap();
        assert_eq!(b.len(), 148);
        assert_eq!(g.read_f32(&b, 0, 37).unwrap(), v);
        g.write(&mut b, 8, &7.5f32.to_le_bytes()).unwrap();
        assert_eq!(g.read_f32(&b, 2, 1).unwrap(), vec![7.5]);
        assert!(matches!(
            g.write(&mut b, 146, &[0; 4]),
            Err(CudaError::Shape(_))
        ));
        let mut out = [0u8; 4];
        assert!(matches!(
            g.read(&b, 145, &mut out),
            Err(CudaError::Shape(_))
        ));
    }
}
