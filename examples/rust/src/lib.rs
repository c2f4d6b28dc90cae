//! rust_counter - the counter plugin in Rust. It counts once a second and
//! keeps counting across reloads, like plugins/counter.c: the count lives
//! in state the host owns, so a rebuilt library picks it up where the old
//! one left it.
//!
//! The host knows nothing of Rust. This crate is a `cdylib` that exports
//! one C symbol, `hotswap_plugin_entry`, and mirrors the two structs of
//! include/hotswap.h with `#[repr(C)]` (see `abi` below). Change `STEP` or
//! `VERSION`, rebuild, move the library into the plugin directory, and the
//! host swaps the new code in.

use std::ffi::{c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use abi::*;

// ---- edit these, rebuild, and watch the host swap the new code in ------
/// Shown in the log and in `hotswap status`.
const VERSION: &CStr = c"1.0";
/// How much the count grows each tick.
const STEP: u64 = 1;
// -------------------------------------------------------------------------

/// Milliseconds between ticks: 1000, or $RUST_COUNTER_TICK_MS at build time
/// (the tests build with a fast tick).
const TICK_MS: u32 = match option_env!("RUST_COUNTER_TICK_MS") {
    Some(text) => parse_u32(text),
    None => 1000,
};

/// The C ABI of include/hotswap.h, by hand. These definitions MUST match
/// the header member for member: the host reads the descriptor with the
/// C layout, and a mismatch is memory corruption, not an error message.
/// What guards them: the `const` assertions below (sizes and offsets of
/// the C layout on 64-bit Linux), the host's own check of `size` (a
/// descriptor smaller than the ABI needs is rejected), and
/// tests/test_host_rust.c, which loads the built library and compares the
/// descriptor with the C `hs_plugin` (its size must equal
/// `sizeof(hs_plugin)`). When hotswap.h grows (members are only appended),
/// append the same members here.
pub mod abi {
    use std::ffi::{c_char, c_int, c_uint, c_void};
    use std::mem::{offset_of, size_of};

    pub const HS_ABI_VERSION: u32 = 1;

    /// Status codes (a few of HS_ERRNO_MAP).
    pub const HS_OK: c_int = 0;
    pub const HS_EINVAL: c_int = -22;
    pub const HS_ESELFTEST: c_int = -4011;

    /// C enums are `int`-sized: hs_load_reason, hs_unload_reason,
    /// hs_log_level.
    pub type HsLoadReason = c_uint;
    pub type HsUnloadReason = c_uint;
    pub type HsLogLevel = c_uint;

    pub const HS_LOAD_START: HsLoadReason = 1;
    pub const HS_LOAD_RELOAD: HsLoadReason = 2;
    pub const HS_LOAD_UPGRADE: HsLoadReason = 3;
    pub const HS_LOAD_ROLLBACK: HsLoadReason = 4;

    pub const HS_UNLOAD_RELOAD: HsUnloadReason = 1;
    pub const HS_UNLOAD_REMOVED: HsUnloadReason = 2;
    pub const HS_UNLOAD_SHUTDOWN: HsUnloadReason = 3;
    pub const HS_UNLOAD_UPGRADE: HsUnloadReason = 4;

    pub const HS_LOG_DEBUG: HsLogLevel = 0;
    pub const HS_LOG_INFO: HsLogLevel = 1;
    pub const HS_LOG_WARN: HsLogLevel = 2;
    pub const HS_LOG_ERROR: HsLogLevel = 3;

    /// hs_ctx: the host's handle for one plugin; opaque.
    #[repr(C)]
    pub struct HsCtx {
        _opaque: [u8; 0],
    }

    /// hs_api: the host's functions. `log` is C-variadic (printf-style):
    /// call it with the format "%s" and one NUL-terminated string.
    #[repr(C)]
    pub struct HsApi {
        pub abi_version: u32,
        pub size: u32,
        pub log: Option<
            unsafe extern "C" fn(ctx: *mut HsCtx, level: HsLogLevel, fmt: *const c_char, ...),
        >,
        pub name: Option<unsafe extern "C" fn(ctx: *mut HsCtx) -> *const c_char>,
        pub dir: Option<unsafe extern "C" fn(ctx: *mut HsCtx) -> *const c_char>,
        pub now_ns: Option<unsafe extern "C" fn(ctx: *mut HsCtx) -> u64>,
        pub in_sandbox: Option<unsafe extern "C" fn(ctx: *mut HsCtx) -> c_int>,
        pub tick_start: Option<unsafe extern "C" fn(ctx: *mut HsCtx, interval_ms: u32) -> c_int>,
        pub tick_stop: Option<unsafe extern "C" fn(ctx: *mut HsCtx)>,
    }

    /// hs_plugin: the descriptor the entry symbol returns.
    #[repr(C)]
    pub struct HsPlugin {
        pub abi_version: u32,
        pub size: u32,
        pub name: *const c_char,
        pub version: *const c_char,
        pub state_version: u32,
        pub state_size: u32,
        pub load: Option<
            unsafe extern "C" fn(
                ctx: *mut HsCtx,
                state: *mut c_void,
                reason: HsLoadReason,
            ) -> c_int,
        >,
        pub unload: Option<
            unsafe extern "C" fn(ctx: *mut HsCtx, state: *mut c_void, reason: HsUnloadReason),
        >,
        pub tick: Option<unsafe extern "C" fn(ctx: *mut HsCtx, state: *mut c_void)>,
        pub migrate: Option<
            unsafe extern "C" fn(
                ctx: *mut HsCtx,
                new_state: *mut c_void,
                old_state: *const c_void,
                old_version: u32,
                old_size: u32,
            ) -> c_int,
        >,
        pub selftest: Option<unsafe extern "C" fn(ctx: *mut HsCtx, state: *mut c_void) -> c_int>,
    }

    // The C layout on LP64 (x86-64, AArch64, RISC-V 64): hs_api is 64
    // bytes, hs_plugin 72. A member added, dropped or retyped here without
    // the header (or the other way round) stops the build.
    #[cfg(target_pointer_width = "64")]
    const _: () = {
        assert!(size_of::<HsApi>() == 64);
        assert!(offset_of!(HsApi, log) == 8);
        assert!(offset_of!(HsApi, tick_stop) == 56);
        assert!(size_of::<HsPlugin>() == 72);
        assert!(offset_of!(HsPlugin, name) == 8);
        assert!(offset_of!(HsPlugin, state_version) == 24);
        assert!(offset_of!(HsPlugin, load) == 32);
        assert!(offset_of!(HsPlugin, selftest) == 64);
    };
}

/// The state the host keeps across versions: plain data, C layout. No
/// references, no `String`, no `Box`: after a reload the old library's
/// code and allocator bookkeeping are gone. Changing it means a new
/// `state_version` and a `migrate` callback.
#[repr(C)]
struct State {
    count: u64, // the number the plugin counts up
    loads: u64, // live loads so far, across all versions
}

/// The host's function table, set by the entry symbol. It outlives every
/// version of the plugin.
static API: AtomicPtr<HsApi> = AtomicPtr::new(ptr::null_mut());

fn api() -> &'static HsApi {
    // SAFETY: the host calls the entry (which stores a valid pointer)
    // before any callback, and the table lives as long as the host.
    unsafe { &*API.load(Ordering::Acquire) }
}

/// One log line through the host's printf-style `log`: always the format
/// "%s", so that a '%' in the text is printed, not interpreted.
fn log(ctx: *mut HsCtx, level: HsLogLevel, msg: &str) {
    let text = CString::new(msg.replace('\0', "")).unwrap_or_default();
    if let Some(f) = api().log {
        // SAFETY: a valid format and one NUL-terminated string for its %s.
        unsafe { f(ctx, level, c"%s".as_ptr(), text.as_ptr()) }
    }
}

fn in_sandbox(ctx: *mut HsCtx) -> bool {
    // SAFETY: ctx is the one the host passed to the running callback.
    api().in_sandbox.is_some_and(|f| unsafe { f(ctx) } != 0)
}

/// Runs `body` and returns its code. A panic must not unwind into the
/// host's C frames (an `extern "C"` function aborts the process instead):
/// here it becomes a log line and HS_EINVAL, and the host rejects or rolls
/// back this version. (Needs the default panic = "unwind".)
fn guarded(ctx: *mut HsCtx, stage: &str, body: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(rc) => rc,
        Err(_) => {
            log(ctx, HS_LOG_ERROR, &format!("{stage}: panicked"));
            HS_EINVAL
        }
    }
}

/// The host's state bytes as our struct.
///
/// # Safety
/// `state` is the state pointer the host passed to a callback of this
/// descriptor: `size_of::<State>()` bytes, aligned, ours for the call.
unsafe fn state_of<'a>(state: *mut c_void) -> &'a mut State {
    &mut *state.cast::<State>()
}

fn next_count(count: u64) -> u64 {
    count.wrapping_add(STEP)
}

fn version() -> &'static str {
    VERSION.to_str().unwrap_or("?")
}

fn load_reason_name(reason: HsLoadReason) -> &'static str {
    match reason {
        HS_LOAD_START => "start",
        HS_LOAD_RELOAD => "reload",
        HS_LOAD_UPGRADE => "upgrade",
        HS_LOAD_ROLLBACK => "rollback",
        _ => "unknown reason",
    }
}

fn unload_reason_name(reason: HsUnloadReason) -> &'static str {
    match reason {
        HS_UNLOAD_RELOAD => "reload",
        HS_UNLOAD_REMOVED => "file removed",
        HS_UNLOAD_SHUTDOWN => "shutdown",
        HS_UNLOAD_UPGRADE => "host upgrade",
        _ => "unknown reason",
    }
}

unsafe extern "C" fn counter_load(
    ctx: *mut HsCtx,
    state: *mut c_void,
    reason: HsLoadReason,
) -> c_int {
    guarded(ctx, "load", || {
        // SAFETY: the host's state for this callback.
        let s = unsafe { state_of(state) };
        if in_sandbox(ctx) {
            return HS_OK;
        }
        s.loads += 1;
        let why = load_reason_name(reason);
        if reason == HS_LOAD_START {
            log(
                ctx,
                HS_LOG_INFO,
                &format!(
                    "version {} ({why}): counting from {} by {STEP}",
                    version(),
                    s.count
                ),
            );
        } else {
            log(
                ctx,
                HS_LOG_INFO,
                &format!(
                    "version {} ({why}): resuming at count {} by {STEP}, load {}",
                    version(),
                    s.count,
                    s.loads
                ),
            );
        }
        // Ticks stop by themselves at unload: every load starts its own.
        match api().tick_start {
            // SAFETY: ctx is the running callback's.
            Some(f) => unsafe { f(ctx, TICK_MS) },
            None => HS_EINVAL,
        }
    })
}

unsafe extern "C" fn counter_unload(ctx: *mut HsCtx, state: *mut c_void, reason: HsUnloadReason) {
    guarded(ctx, "unload", || {
        // SAFETY: the host's state for this callback.
        let s = unsafe { state_of(state) };
        if !in_sandbox(ctx) {
            log(
                ctx,
                HS_LOG_INFO,
                &format!(
                    "version {} unloading ({}) at count {}",
                    version(),
                    unload_reason_name(reason),
                    s.count
                ),
            );
        }
        HS_OK
    });
}

unsafe extern "C" fn counter_tick(ctx: *mut HsCtx, state: *mut c_void) {
    guarded(ctx, "tick", || {
        // SAFETY: the host's state for this callback.
        let s = unsafe { state_of(state) };
        s.count = next_count(s.count);
        log(ctx, HS_LOG_INFO, &format!("count {}", s.count));
        HS_OK
    });
}

/// Runs only in the sandbox: the count must move forward, from zero and
/// from where the live count is now.
unsafe extern "C" fn counter_selftest(ctx: *mut HsCtx, state: *mut c_void) -> c_int {
    guarded(ctx, "selftest", || {
        // SAFETY: the host's state for this callback.
        let s = unsafe { state_of(state) };
        if next_count(0) == 0 || next_count(s.count) <= s.count {
            log(
                ctx,
                HS_LOG_ERROR,
                &format!("selftest: a step of {STEP} does not move the count forward"),
            );
            return HS_ESELFTEST;
        }
        HS_OK
    })
}

/// The descriptor: constant data that lives as long as the library.
/// Raw pointers are not `Sync`; these point at `'static` constants and the
/// struct is never written, so sharing it is sound.
#[repr(transparent)]
struct Descriptor(HsPlugin);
unsafe impl Sync for Descriptor {}

static DESCRIPTOR: Descriptor = Descriptor(HsPlugin {
    abi_version: HS_ABI_VERSION,
    size: std::mem::size_of::<HsPlugin>() as u32,
    name: c"rust_counter".as_ptr(),
    version: VERSION.as_ptr(),
    state_version: 1,
    state_size: std::mem::size_of::<State>() as u32,
    load: Some(counter_load),
    unload: Some(counter_unload),
    tick: Some(counter_tick),
    migrate: None,
    selftest: Some(counter_selftest),
});

/// The one exported symbol. Refuses (NULL) a host whose table is older or
/// smaller than the one this crate mirrors.
///
/// # Safety
/// Called by the host only, with its `hs_api` table (or NULL), which stays
/// valid for the host's lifetime.
#[no_mangle]
pub unsafe extern "C" fn hotswap_plugin_entry(host_api: *const HsApi) -> *const HsPlugin {
    if host_api.is_null() {
        return ptr::null();
    }
    // SAFETY: the host passes its table, valid for the host's lifetime.
    let a = unsafe { &*host_api };
    if a.abi_version < HS_ABI_VERSION || (a.size as usize) < std::mem::size_of::<HsApi>() {
        return ptr::null();
    }
    API.store(host_api.cast_mut(), Ordering::Release);
    &DESCRIPTOR.0
}

/// A decimal `u32` at compile time (for TICK_MS); a bad value stops the
/// build.
const fn parse_u32(text: &str) -> u32 {
    let b = text.as_bytes();
    let mut i = 0;
    let mut n: u32 = 0;
    assert!(!b.is_empty(), "RUST_COUNTER_TICK_MS is empty");
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "RUST_COUNTER_TICK_MS is not a number"
        );
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    assert!(n > 0, "RUST_COUNTER_TICK_MS must be at least 1");
    n
}
