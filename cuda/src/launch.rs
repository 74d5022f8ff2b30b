//! Launch plumbing: grid sizing for the common shapes (one thread per element, one warp
//! per row), argument checks, and [`Launch`], the builder that assembles a kernel's
//! arguments and, before launching, checks their kinds against the kernel's parameter
//! list in its source. Everything but [`Launch::run`] is plain CPU logic.

use crate::device::CudaDevice;
use crate::error::CudaError;
use crate::source::{check_call, KernelFile, ParamKind, Variant};
use cudarc::driver::{CudaFunction, CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};

/// Threads per block of the element-wise and warp-per-row kernels.
pub const BLOCK: u32 = 256;

/// `ceil(a / b)`.
pub fn ceil_div(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// `n` blocks as a grid dimension; more than `i32::MAX` is an error naming `what`.
pub fn grid_dim(n: usize, what: &str) -> Result<u32, CudaError> {
    u32::try_from(n)
        .ok()
        .filter(|&g| g <= i32::MAX as u32)
        .ok_or_else(|| CudaError::Shape(format!("{what}: grid of {n} blocks is too large")))
}

/// One thread per element, `BLOCK` threads per block.
pub fn elementwise(n: usize) -> Result<LaunchConfig, CudaError> {
    Ok(LaunchConfig {
        grid_dim: (
            grid_dim(ceil_div(n.max(1), BLOCK as usize), "elementwise")?,
            1,
            1,
        ),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// One warp per row, `BLOCK / 32` rows per block.
pub fn warp_per_row(rows: usize) -> Result<LaunchConfig, CudaError> {
    let per_block = (BLOCK / 32) as usize;
    Ok(LaunchConfig {
        grid_dim: (grid_dim(ceil_div(rows.max(1), per_block), "rows")?, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Checks that a buffer holds at least `want` elements; the error names it.
pub fn check_len(name: &str, have: usize, want: usize) -> Result<(), CudaError> {
    if have < want {
        return Err(CudaError::Shape(format!(
            "{name} holds {have} elements, {want} needed"
        )));
    }
    Ok(())
}

/// Converts a dimension to the kernels' `int`, naming it when it does not fit.
pub fn as_i32(name: &str, v: usize) -> Result<i32, CudaError> {
    i32::try_from(v).map_err(|_| CudaError::Shape(format!("{name} = {v} does not fit in i32")))
}

/// One argument as the builder holds it until `run`.
enum Arg {
    Ptr(u64),
    I32(i32),
    I64(i64),
    F32(f32),
}

/// One kernel launch being assembled: `Launch::new(..)?.ptr(&x).i32(n).run(cfg)`.
pub struct Launch<'a> {
    dev: &'a CudaDevice,
    func: CudaFunction,
    file: &'static KernelFile,
    name: String,
    args: Vec<Arg>,
}

impl<'a> Launch<'a> {
    /// Looks up (compiling on first use) `name` in `file` built with `variant`.
    pub fn new(
        dev: &'a CudaDevice,
        file: &'static KernelFile,
        variant: Variant,
        name: &str,
    ) -> Result<Self, CudaError> {
        Ok(Launch {
            dev,
            func: dev.function(file, variant, name)?,
            file,
            name: name.to_string(),
            args: Vec::new(),
        })
    }

    /// A device buffer argument.
    pub fn ptr<T>(mut self, s: &CudaSlice<T>) -> Self {
        let (p, _sync) = s.device_ptr(self.dev.stream());
        self.args.push(Arg::Ptr(p));
        self
    }

    /// A device buffer the kernel writes (the `&mut` documents it and holds the borrow).
    pub fn out<T>(self, s: &mut CudaSlice<T>) -> Self {
        self.ptr(s)
    }

    /// An optional device buffer (null when `None`).
    pub fn opt<T>(self, s: Option<&CudaSlice<T>>) -> Self {
        match s {
            Some(s) => self.ptr(s),
            None => self.null(),
        }
    }

    /// A raw device address argument.
    pub fn raw(mut self, p: u64) -> Self {
        self.args.push(Arg::Ptr(p));
        self
    }

    /// A null pointer argument.
    pub fn null(mut self) -> Self {
        self.args.push(Arg::Ptr(0));
        self
    }

    /// An `int` argument.
    pub fn i32(mut self, v: i32) -> Self {
        self.args.push(Arg::I32(v));
        self
    }

    /// A `long long` argument.
    pub fn i64(mut self, v: i64) -> Self {
        self.args.push(Arg::I64(v));
        self
    }

    /// A `float` argument.
    pub fn f32(mut self, v: f32) -> Self {
        self.args.push(Arg::F32(v));
        self
    }

    /// Queues the launch on the device's stream and checks the launch error at once.
    /// The argument list is first checked against the kernel's parameter list in its
    /// source, so a launcher out of step with its kernel is an error, not a bad launch.
    pub fn run(self, cfg: LaunchConfig) -> Result<(), CudaError> {
        let kinds: Vec<ParamKind> = self
            .args
            .iter()
            .map(|a| match a {
                Arg::Ptr(_) => ParamKind::Ptr,
                Arg::I32(_) => ParamKind::I32,
                Arg::I64(_) => ParamKind::I64,
                Arg::F32(_) => ParamKind::F32,
            })
            .collect();
        check_call(self.file, &self.name, &kinds)?;
        let stream = self.dev.stream();
        let mut b = stream.launch_builder(&self.func);
        for a in &self.args {
            match a {
                Arg::Ptr(p) => b.arg(p),
                Arg::I32(v) => b.arg(v),
                Arg::I64(v) => b.arg(v),
                Arg::F32(v) => b.arg(v),
            };
        }
        // SAFETY: every launcher checks its buffers' lengths against the sizes it passes,
        // and the argument list matches the kernel's parameter list in order and type
        // (pointers as 64-bit device addresses).
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_every_element_once() {
        for n in [1usize, 255, 256, 257, 100_000] {
            let c = elementwise(n).unwrap();
            let covered = c.grid_dim.0 as usize * c.block_dim.0 as usize;
            assert!(covered >= n && covered < n + BLOCK as usize);
        }
        assert_eq!(elementwise(0).unwrap().grid_dim.0, 1);
        let c = warp_per_row(17).unwrap();
        assert_eq!(c.grid_dim.0, 3);
        assert_eq!(ceil_div(17, 8), 3);
        assert!(grid_dim(1 << 40, "huge").is_err());
    }

    #[test]
    fn argument_checks_name_what_is_wrong() {
        assert!(check_len("x", 10, 10).is_ok());
        let e = check_len("x", 9, 10).unwrap_err().to_string();
        assert!(e.contains("x holds 9 elements, 10 needed"), "{e}");
        assert_eq!(as_i32("n", 7), Ok(7));
        let e = as_i32("n", 1 << 40).unwrap_err().to_string();
        assert!(e.contains("n = "), "{e}");
    }
}
