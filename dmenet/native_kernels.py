"""dmenet's compiled kernels, run from their cached machine code without importing numba.

numba compiles the kernels (the propagation's multigrid, the edge filters, …), but a fresh process pays
for numba itself before the first one runs: its import (0.15–0.4 s), defining the ~40 kernels (0.1 s)
and loading each from numba's cache under its compiler lock (3.5–10 ms each, ≈ 25 on Zhuo & Sim's
path). For a small photo that is more than the estimate. So a kernel declared with its argument types,

    @kernel("f8[:, ::1], f8[::1], i8, f8[:, ::1]")
    def correlate_contiguous_lines(padded, weights, symmetry, out): ...

is compiled once per machine through numba into a C-callable entry (``numba.cfunc`` over ``carray``
views of the arguments, which returns 1 if the kernel raised), and the LLVM IR numba made for it
(``inspect_llvm``) is turned into an object file by llvmlite and cached on disk, one per module. A later
process loads that object with llvmlite's MCJIT (≈ 0.01 s a module, llvmlite's import ≈ 0.06 s) and
calls the entry through ctypes, which releases the GIL as numba's ``nogil`` does. It is numba's own
code for the kernel: same IR, same code generation, the same results bit for bit (tested).

numba is imported only to build an object, for a call whose arguments match no declared signature,
for a kernel declared without signatures (one that makes arrays, or is only called by other
kernels), or everywhere with ``DMENET_NATIVE_KERNELS=0``. Either way the call behaves the same: a
kernel that raises is called again through numba, which raises its exception.

A cached object is used only if the sources it was built from (every module whose kernels it holds)
are unchanged, and for the same CPU, llvmlite, numba and Python; it lives where numba caches
(``dmenet.kernel_cache.native_cache_folder``).
"""
import ctypes
import dataclasses
import functools
import importlib
import json
import os
import pathlib
import sys
import threading
import warnings
import zlib

import numpy as np

from dmenet.kernel_cache import native_cache_folder

DISABLE_VARIABLE = "DMENET_NATIVE_KERNELS"
_FORMAT = 1  # bump when the object files' layout or the entries' calling convention changes

# numba's code reaches these only after an exception, and every entry catches the kernel's exceptions
# itself; resolving them to abort() makes any other path end loudly instead of in undefined behaviour
_ERROR_PATH_SYMBOLS = frozenset({
    "numba_gil_ensure", "numba_gil_release", "numba_unpickle", "numba_runtime_build_excinfo_struct",
    "numba_do_raise", "NRT_Free", "NRT_MemInfo_call_dtor", "PyUnicode_FromString", "PyErr_WriteUnraisable",
    "Py_DecRef", "PyErr_Clear", "PyBytes_FromStringAndSize", "PyErr_SetString", "PyErr_SetNone",
})

# Two locks, so that no thread waits for one while holding numba's compiler lock and the other: the
# build lock is held while numba compiles (a build); the table lock only around quick updates, also
# from inside numba's compiler (typing a call to a kernel whose dispatcher is new).
_build_lock = threading.RLock()  # building and loading objects: numba's and LLVM's global state
_table_lock = threading.Lock()
_modules = {}  # module name → _NativeModule, or None when its object could not be made
_kernels_by_module = {}  # module name → [Kernel, …] in definition order
_compile_listeners = []


class NativeKernelError(RuntimeError):
    """A kernel's object file could not be built (a kernel that needs more of numba's runtime than an entry can have)."""


# ----------------------------------------------------------------------------------------------- types


@dataclasses.dataclass(frozen=True)
class _Array:
    """A C-contiguous array argument: passed as its data pointer and its shape."""

    dtype: np.dtype
    ndim: int

    def matches(self, value):
        return (type(value) is np.ndarray and value.dtype == self.dtype and value.ndim == self.ndim
                and value.flags.c_contiguous and value.flags.aligned)

    def flatten(self, value, out):
        out.append(value.ctypes.data)
        out.extend(value.shape)

    def c_types(self):
        return [ctypes.c_void_p] + [ctypes.c_int64] * self.ndim


@dataclasses.dataclass(frozen=True)
class _Scalar:
    """An int64, float64 or bool argument (a bool passes as an int64)."""

    dtype: np.dtype

    def matches(self, value):
        if self.dtype == np.bool_:
            return isinstance(value, bool | np.bool_)
        if self.dtype == np.int64:
            return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
        return isinstance(value, float | np.float64)

    def flatten(self, value, out):
        out.append(value.item() if isinstance(value, np.generic) else value)

    def c_types(self):
        return [ctypes.c_double if self.dtype == np.float64 else ctypes.c_int64]


_SCALARS = {"i8": np.int64, "f8": np.float64, "b1": np.bool_}
_ARRAY_DTYPES = {"i8": np.int64, "f8": np.float64, "f4": np.float32, "b1": np.bool_}


def _parse_argument(text):
    """"f8[:, :, ::1]" → a 3-D C-contiguous float64 array; "i8", "f8", "b1" → a scalar."""
    text = text.strip()
    if "[" not in text:
        if text not in _SCALARS:
            raise ValueError(f"kernel signature: unknown scalar type {text!r} (use one of {', '.join(_SCALARS)})")
        return _Scalar(np.dtype(_SCALARS[text]))
    name, dims = text.split("[", 1)
    axes = [axis.strip() for axis in dims.rstrip("]").split(",")]
    if name.strip() not in _ARRAY_DTYPES or axes[-1] != "::1" or any(axis != ":" for axis in axes[:-1]):
        raise ValueError(f"kernel signature: {text!r} is not a C-contiguous array of "
                         f"{', '.join(_ARRAY_DTYPES)} such as f8[:, ::1]")
    return _Array(np.dtype(_ARRAY_DTYPES[name.strip()]), len(axes))


def _parse_signature(text):
    """"f8[:, ::1], i8" → (_Array, _Scalar); arrays' brackets hold commas, so split at the top level only."""
    arguments, depth, current = [], 0, ""
    for character in text:
        depth += {"[": 1, "]": -1}.get(character, 0)
        if character == "," and depth == 0:
            arguments.append(current)
            current = ""
        else:
            current += character
    arguments.append(current)
    return tuple(_parse_argument(argument) for argument in arguments if argument.strip())


# ---------------------------------------------------------------------------------------------- kernel


class Kernel:
    """A numba kernel that runs from its cached machine code when its arguments match a declared signature.

    Made by ``kernel``. Calling it runs the native entry of the first signature the arguments match,
    else numba's dispatcher (compiling as numba does). Other kernels call it as they would a numba
    function: numba sees its dispatcher.

    Attributes:
        py_func: the Python function.
        signatures: the declared signatures, parsed.
        returns: the type of its scalar result, parsed, or None for a kernel that returns nothing.
        options: numba's options (``nogil`` and ``cache`` on unless given).
    """

    def __init__(self, py_func, signatures, options, returns=None):
        self.py_func = py_func
        self.signatures = tuple(_parse_signature(text) for text in signatures)
        self.returns = None if returns is None else _parse_argument(returns)
        if isinstance(self.returns, _Array):
            raise ValueError(f"kernel {py_func.__qualname__}: only a scalar result can be returned, not {returns!r}")
        self.options = {"cache": True, "nogil": True, **options}
        self._dispatcher = None
        self._entries = None  # one ctypes function per signature, once the module's object is loaded
        functools.update_wrapper(self, py_func)
        with _table_lock:
            _kernels_by_module.setdefault(py_func.__module__, []).append(self)

    @property
    def dispatcher(self):
        """numba's dispatcher for the function (imports numba)."""
        if self._dispatcher is None:
            dispatcher = _numba().njit(**self.options)(self.py_func)  # made outside the lock: see _table_lock
            with _table_lock:
                if self._dispatcher is None:
                    self._dispatcher = dispatcher
        return self._dispatcher

    def __call__(self, *args):
        if self.signatures and native_enabled():
            entries = self._entries if self._entries is not None else self._load_entries()
            for signature, entry in zip(self.signatures, entries):
                matches = len(signature) == len(args) and all(kind.matches(value) for kind, value in zip(signature, args))
                if entry is not None and matches:
                    result = None if self.returns is None else np.zeros(1, self.returns.dtype)
                    flat = [] if result is None else [result.ctypes.data]
                    for kind, value in zip(signature, args):
                        kind.flatten(value, flat)
                    if entry(*flat) == 0:
                        return None if result is None else result[0].item()
                    break  # the kernel raised: numba's call below raises it with its own message
        return self.dispatcher(*args)

    def _load_entries(self):
        native = _native_module(self.py_func.__module__)
        entries = [None] * len(self.signatures) if native is None else native.entries_of(self)
        self._entries = entries
        return entries

    def __repr__(self):
        return f"<dmenet kernel {self.py_func.__module__}.{self.py_func.__qualname__}>"


def kernel(*signatures, returns=None, **options):
    """Decorator: a compiled kernel, run natively for the given argument types (see the module's docstring).

    Args:
        *signatures: the argument types of the calls to run natively, e.g. ``"f8[:, :, ::1], i8, b1"``:
            C-contiguous arrays of f8, f4, i8 or b1 as ``dtype[:, …, ::1]``, scalars as ``i8``, ``f8``
            or ``b1``. The kernel must return nothing and make no array (its object could not run
            without numba's runtime). None: numba only, e.g. for a helper only other kernels call.
        returns: the kernel's result, ``i8``, ``f8`` or ``b1``, when it returns one (a scalar only).
        **options: numba's ``njit`` options (``fastmath``, ``inline``, …); ``nogil`` and ``cache`` are on unless given.

    Returns:
        A decorator making a ``Kernel``.

    Example:
        >>> @kernel("f8[::1], f8")
        ... def scale(values, factor):
        ...     for i in range(values.shape[0]):
        ...         values[i] *= factor
    """
    def decorate(py_func):
        return Kernel(py_func, signatures, options, returns)

    return decorate


def native_enabled():
    """Whether kernels run from their cached machine code (``DMENET_NATIVE_KERNELS=0`` turns it off)."""
    return os.environ.get(DISABLE_VARIABLE, "1") != "0"


# ------------------------------------------------------------------------------------- numba, lazily


_numba_lock = threading.Lock()  # functools.cache alone could run the import twice, registering twice


def _numba():
    """numba, imported once: its typing learns ``Kernel`` (as the kernel's dispatcher) and its compile
    events reach ``add_compile_listener``'s listeners."""
    with _numba_lock:
        return _import_numba()


@functools.cache
def _import_numba():
    import numba
    from numba.core import event, types
    from numba.extending import typeof_impl

    @typeof_impl.register(Kernel)
    def _typeof_kernel(value, context):
        return types.Dispatcher(value.dispatcher)

    class _Forward(event.Listener):
        def on_start(self, _event):
            _announce_compilation()

        def on_end(self, _event):
            pass

    event.register("numba:compile", _Forward())
    return numba


def add_compile_listener(listener):
    """Calls ``listener()`` whenever a kernel starts compiling (numba's, or building a native object); imports nothing.

    Returns:
        A function that removes the listener.
    """
    with _table_lock:
        _compile_listeners.append(listener)

    def remove():
        with _table_lock:
            if listener in _compile_listeners:
                _compile_listeners.remove(listener)

    return remove


def _announce_compilation():
    with _table_lock:
        listeners = list(_compile_listeners)
    for listener in listeners:
        listener()


# ------------------------------------------------------------------------------- the native objects


class _NativeModule:
    """A loaded object file: the entries of one module's kernels, kept alive with their execution engine."""

    def __init__(self, engine, symbols):
        self.engine = engine
        self.symbols = symbols  # kernel name → [its entry's symbol per signature]

    def entries_of(self, kernel_):
        entries = []
        for signature, symbol in zip(kernel_.signatures, self.symbols.get(kernel_.py_func.__qualname__, [])):
            argument_types = [ctypes.c_void_p] if kernel_.returns is not None else []
            argument_types += [c_type for kind in signature for c_type in kind.c_types()]
            address = self.engine.get_function_address(symbol)
            entries.append(ctypes.CFUNCTYPE(ctypes.c_int32, *argument_types)(address) if address else None)
        entries += [None] * (len(kernel_.signatures) - len(entries))
        return entries


def _native_module(module_name, build=True):
    """The loaded object of a module's kernels (built and cached first if needed), or None if it cannot be
    made (or, with ``build=False``, is not cached yet)."""
    with _build_lock:
        if module_name in _modules:
            return _modules[module_name]
        try:
            llvm = _llvm()
            key = _environment_key(llvm)
        except Exception as error:  # noqa: BLE001 — no usable llvmlite: numba runs the kernels (and says why)
            return _through_numba(module_name, error)
        folder = native_cache_folder()
        stem = f"{module_name}.{key}"
        loaded = _load_cached(llvm, folder, stem) if folder else None
        if loaded is None and not build:
            return None
        if loaded is None:
            _announce_compilation()
            try:
                object_code, manifest = _build(module_name, llvm)
                loaded = _load(llvm, object_code, manifest)
            except Exception as error:  # noqa: BLE001 — the kernels still run, through numba
                return _through_numba(module_name, error)
            if folder:
                _write_cached(folder, stem, object_code, manifest)
        _modules[module_name] = loaded
        return loaded


def _through_numba(module_name, error):
    warnings.warn(f"dmenet: the kernels of {module_name} run through numba: their native object could not be made "
                  f"({error})", RuntimeWarning, stacklevel=4)
    _modules[module_name] = None
    return None


@functools.cache
def _llvm():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


@functools.cache
def _cpu(llvm):
    """(CPU name, its features) as numba's JIT targets them (numba's NUMBA_CPU_NAME / NUMBA_CPU_FEATURES included)."""
    name = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
    features = os.environ.get("NUMBA_CPU_FEATURES") or llvm.get_host_cpu_features().flatten()
    return name, features


@functools.cache
def _environment_key(llvm):
    """What an object file depends on besides its sources (numba's version among them): CPU, LLVM, Python, this format."""
    import llvmlite

    parts = (_FORMAT, *_cpu(llvm), llvm.get_process_triple(), llvm.llvm_version_info, llvmlite.__version__,
             sys.implementation.cache_tag)
    return f"{zlib.crc32(repr(parts).encode()):08x}"  # zlib, not hashlib: OpenSSL's load is 0.01 s of start-up


def _source_stamp(path):
    status = os.stat(path)
    return [str(path), status.st_mtime_ns, status.st_size]


def _load_cached(llvm, folder, stem):
    """The cached object when its sources are unchanged, else None (then it is built again)."""
    manifest_path, object_path = pathlib.Path(folder, stem + ".json"), pathlib.Path(folder, stem + ".o")
    try:
        manifest = json.loads(manifest_path.read_text())
        if any(_source_stamp(path) != [path, mtime, size] for path, mtime, size in manifest["sources"]):
            return None
        object_code = object_path.read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        return _load(llvm, object_code, manifest)
    except Exception:  # noqa: BLE001 — a damaged or foreign file: build it again
        return None


def _write_cached(folder, stem, object_code, manifest):
    """Writes the object and then its manifest, each atomically with the umask respected (a reader never sees half a file)."""
    from dmenet.files.images import atomic_path  # only a build writes: Pillow's import stays off the loading path

    try:
        for suffix, data in ((".o", object_code), (".json", json.dumps(manifest, indent=1).encode())):
            with atomic_path(pathlib.Path(folder, stem + suffix)) as temporary:
                temporary.write_bytes(data)
    except OSError:
        pass  # not cached: the next process builds it again


def _process_symbol(name):
    """The address of a C function this process has loaded (the C library's ``sqrt``, …), or None."""
    try:
        return ctypes.cast(getattr(ctypes.CDLL(None), name), ctypes.c_void_p).value
    except (AttributeError, OSError, TypeError):  # TypeError: a platform without dlopen(NULL)
        return None


def _load(llvm, object_code, manifest):
    """An execution engine holding the object: C library calls resolved in this process, numba's
    error-path symbols to abort()."""
    for symbol in manifest["externals"]:
        if llvm.address_of_symbol(symbol) is None:
            address = _process_symbol(symbol if symbol not in _ERROR_PATH_SYMBOLS else "abort")
            if address is None:
                raise NativeKernelError(f"cannot resolve {symbol} in this process")
            llvm.add_symbol(symbol, address)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _target_machine(llvm))
    engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
    engine.finalize_object()
    return _NativeModule(engine, manifest["symbols"])


def _target_machine(llvm):
    """The target numba's JIT compiles for: this CPU and its features, static relocations, JIT code model."""
    name, features = _cpu(llvm)
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=name, features=features, opt=3, reloc="static", codemodel="jitdefault",
                                        jit=True)


# ------------------------------------------------------------------------------------------ building


def _build(module_name, llvm):
    """(object code, manifest) for every declared signature of the module's kernels, compiled through numba."""
    numba = _numba()
    importlib.import_module(module_name)  # defines its kernels
    with _table_lock:
        kernels = [each for each in _kernels_by_module.get(module_name, []) if each.signatures]
    combined, symbols, externals = None, {}, set()
    for kernel_ in kernels:
        names = []
        for signature in kernel_.signatures:
            entry = _entry(numba, kernel_, signature)
            ir = llvm.parse_assembly(entry.inspect_llvm())
            ir.verify()
            names.append(entry.native_name)
            if combined is None:
                combined = ir
            else:
                combined.link_in(ir)
        symbols[kernel_.py_func.__qualname__] = names
    if combined is None:
        raise NativeKernelError(f"{module_name} declares no kernel signature")
    for function in combined.functions:
        if function.is_declaration and not function.name.startswith("llvm."):
            externals.add(function.name)
    unexpected = sorted(symbol for symbol in externals - _ERROR_PATH_SYMBOLS if _process_symbol(symbol) is None)
    if unexpected:
        raise NativeKernelError(
            f"the kernels of {module_name} call into numba's runtime ({', '.join(unexpected)}), which a native entry "
            "cannot: a kernel that makes arrays must be declared without signatures")
    numba_version = pathlib.Path(numba.__file__).with_name("_version.py")  # a stat, unlike importlib.metadata's 0.05 s
    used_sources = _kernel_sources() | {numba_version if numba_version.is_file() else pathlib.Path(numba.__file__)}
    manifest = {
        "format": _FORMAT, "module": module_name, "symbols": symbols, "externals": sorted(externals),
        "sources": [_source_stamp(path) for path in sorted(map(str, used_sources))],
    }
    return _target_machine(llvm).emit_object(combined), manifest


def _kernel_sources():
    """The source files of every module holding kernels now (a kernel may call one in another module)."""
    with _table_lock:
        names = [name for name, kernels in _kernels_by_module.items() if kernels]
    return {pathlib.Path(sys.modules[name].__file__).resolve() for name in names if getattr(sys.modules.get(name), "__file__", None)}


_ENTRY_TEMPLATE = """\
def entry({parameters}):
    try:
        {store}kernel({arguments})
    except Exception:
        return 1
    return 0
"""


def _entry(numba, kernel_, signature):
    """numba.cfunc taking the arrays as (data pointer, shape …) and returning 0, or 1 when the kernel raised.

    Its source is generated because its arity is the kernel's; it only views the pointers as arrays
    (``carray``, no copy) and calls the kernel. A kernel's scalar result is stored through a first,
    extra pointer.
    """
    from numba import types

    parameters, arguments, c_types, namespace = [], [], [], {"kernel": kernel_.dispatcher, "carray": numba.carray}
    store = ""
    if kernel_.returns is not None:
        namespace["result_dtype"] = kernel_.returns.dtype.type
        parameters.append("result")
        c_types.append(types.voidptr)
        store = "carray(result, (1,), result_dtype)[0] = "
    for index, kind in enumerate(signature):
        name = f"a{index}"
        if isinstance(kind, _Array):
            shape = [f"{name}_{axis}" for axis in range(kind.ndim)]
            namespace[f"{name}_dtype"] = kind.dtype.type
            parameters += [name, *shape]
            arguments.append(f"carray({name}, ({', '.join(shape)},), {name}_dtype)")
            c_types += [types.voidptr] + [types.int64] * kind.ndim
        elif kind.dtype == np.bool_:
            parameters.append(name)
            arguments.append(f"{name} != 0")
            c_types.append(types.int64)
        else:
            parameters.append(name)
            arguments.append(name)
            c_types.append(types.float64 if kind.dtype == np.float64 else types.int64)
    source = _ENTRY_TEMPLATE.format(parameters=", ".join(parameters), arguments=", ".join(arguments), store=store)
    exec(compile(source, f"<native entry of {kernel_.py_func.__qualname__}>", "exec"), namespace)
    return numba.cfunc(types.int32(*c_types))(namespace["entry"])


def preload(*module_names):
    """Starts loading the named kernel modules' cached objects on a daemon thread, and builds nothing.

    For a command that knows which kernels it will need before its first call: llvmlite's import and
    the loads (≈ 0.1 s) then overlap its other start-up work, mostly outside the GIL. An object that is
    not cached yet is left to the kernel's first call, which builds it (where a command announces that).

    Args:
        *module_names: modules defining kernels.

    Returns:
        The thread, or None with ``DMENET_NATIVE_KERNELS=0``.

    Example:
        >>> preload("dmenet.propagation.stencil", "dmenet.propagation.aggregation")
    """
    if not native_enabled():
        return None
    thread = threading.Thread(target=_load_cached_modules, args=(module_names,), name="dmenet-kernel-preload", daemon=True)
    thread.start()
    return thread


def _load_cached_modules(module_names):
    try:
        for name in module_names:
            importlib.import_module(name)
            _native_module(name, build=False)
    except Exception:  # noqa: BLE001 — only a head start: the kernels' own calls report any problem
        pass


def load(*module_names):
    """Loads (building and caching where needed) the native objects of the named kernel modules.

    Args:
        *module_names: modules defining kernels, e.g. ``"dmenet.propagation.stencil"``.

    Returns:
        {module name: whether its kernels run natively}.

    Example:
        >>> load("dmenet.nearest_filter_kernel")
        {'dmenet.nearest_filter_kernel': True}
    """
    status = {}
    for name in module_names:
        importlib.import_module(name)
        status[name] = native_enabled() and _native_module(name) is not None
    return status
