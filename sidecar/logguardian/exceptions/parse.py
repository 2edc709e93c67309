"""Find stack traces inside a log message and parse them, one parser per runtime.

Every parser works line by line on a bounded prefix of the message (`MAX_SCAN`
characters, `MAX_LINES` lines, each line cut to `MAX_LINE` characters before any
regex sees it), so a 1 MB one-line "trace" or a 10,000-frame dump costs bounded
time, and anything that does not parse simply yields no trace: the record flows on.

Frames are stored innermost (throw site) first whatever order the runtime prints
them in; `Trace.exceptions[0]` is the exception that was raised (the outermost),
followed by its causes, so every runtime looks the same to the fingerprint.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_SCAN = 256 * 1024  # characters of a message searched for a trace
MAX_LINES = 4000  # lines of a message looked at
MAX_LINE = 2000  # characters of one line a regex may see
MAX_FRAMES = 64  # frames kept per exception; the rest are counted in `omitted`
MAX_CHAIN = 8  # exceptions kept per trace (primary + causes + suppressed)
MAX_MESSAGE = 1000  # characters of an exception message kept

Relation = str  # "primary" | "cause" | "context" | "suppressed"


@dataclass(slots=True)
class Frame:
    function: str
    file: str | None = None
    line: int | None = None
    module: str | None = None
    in_app: bool = True


@dataclass(slots=True)
class ParsedException:
    type: str
    message: str
    frames: list[Frame] = field(default_factory=list)
    omitted: int = 0
    relation: Relation = "primary"

    def add(self, frame: Frame) -> None:
        if len(self.frames) < MAX_FRAMES:
            self.frames.append(frame)
        else:
            self.omitted += 1


@dataclass(slots=True)
class Trace:
    runtime: str  # java | python | go | node | dotnet | ruby
    exceptions: list[ParsedException]
    first_line: int  # line span of the trace inside the message
    last_line: int

    @property
    def primary(self) -> ParsedException:
        return self.exceptions[0]

    @property
    def chain(self) -> list[ParsedException]:
        """The primary exception and its causes: what identifies the failure."""
        return [e for e in self.exceptions if e.relation != "suppressed"]


class LibraryRules:
    """Decides in-app vs library. Defaults cover runtimes' own code and package
    managers' directories; `in_app_prefixes` (paths or module prefixes) win over them."""

    DEFAULT_LIBRARY_MODULES = (
        "java.",
        "javax.",
        "jdk.",
        "sun.",
        "com.sun.",
        "kotlin.",
        "scala.",
        "System.",
        "Microsoft.",
        "runtime.",
    )
    DEFAULT_LIBRARY_PATHS = (
        "site-packages/",
        "dist-packages/",
        "node_modules/",
        "node:",
        "internal/",
        "<frozen ",
        "/pkg/mod/",
        "/gems/",
        "/lib/ruby/",
        "<internal:",
    )
    _PYTHON_STDLIB = re.compile(r"/lib/python\d+(?:\.\d+)?/")

    def __init__(
        self, in_app_prefixes: tuple[str, ...] = (), library_prefixes: tuple[str, ...] = ()
    ):
        self.in_app = tuple(p for p in in_app_prefixes if p)
        self.library_modules = self.DEFAULT_LIBRARY_MODULES + tuple(library_prefixes)
        paths = self.DEFAULT_LIBRARY_PATHS + tuple(library_prefixes)
        # One scan per frame instead of one substring test per path.
        self._library_path = re.compile(
            "|".join([*map(re.escape, paths), self._PYTHON_STDLIB.pattern])
        )

    def is_in_app(self, function: str, file: str | None, module: str | None) -> bool:
        name = module or function
        if self.in_app and (
            name.startswith(self.in_app) or (file is not None and file.startswith(self.in_app))
        ):
            return True
        if name.startswith(self.library_modules):
            return False
        return file is None or self._library_path.search(file) is None


DEFAULT_RULES = LibraryRules()


def _lines(text: str) -> list[str]:
    lines = text[:MAX_SCAN].split("\n", MAX_LINES)
    if len(lines) > MAX_LINES:
        lines.pop()
    return [line[:MAX_LINE].rstrip("\r") for line in lines]


def find_traces(text: str, rules: LibraryRules = DEFAULT_RULES) -> list[Trace]:
    """Every trace in `text`, in order; [] for ordinary messages (the common case,
    decided by a few substring tests)."""
    if "\n" not in text:
        return []
    head = text[:MAX_SCAN]
    parsers: list[Callable[[list[str], LibraryRules], list[Trace]]] = []
    if "Traceback (most recent call last):" in head:
        parsers.append(_python)
    if "goroutine " in head and ("panic: " in head or "fatal error: " in head):
        parsers.append(_go)
    if "\tat " in head or "   at " in head:
        parsers.append(_at_frames)
    if ":in `" in head or ":in '" in head:
        parsers.append(_ruby)
    if not parsers:
        return []
    lines = _lines(head)
    traces: list[Trace] = []
    for parser in parsers:
        traces.extend(parser(lines, rules))
    traces.sort(key=lambda t: t.first_line)
    return traces


# -- Python -----------------------------------------------------------------------------

_PY_FRAME = re.compile(r'^\s*File "([^"]*)", line (\d+)(?:, in (.+))?$')
_PY_EXC = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|[A-Z]\w*))(?:: (.*))?$"
)
_PY_CAUSE = "The above exception was the direct cause of the following exception:"
_PY_CONTEXT = "During handling of the above exception, another exception occurred:"
_PY_REPEAT = re.compile(r"^\s*\[Previous line repeated (\d+) more times?\]")


def _python(lines: list[str], rules: LibraryRules) -> list[Trace]:
    traces: list[Trace] = []
    chain: list[ParsedException] = []
    first = -1
    relation = "primary"
    i, n = 0, len(lines)
    while i < n:
        if not lines[i].endswith("Traceback (most recent call last):"):
            i += 1
            continue
        if first < 0:
            first = i
        exc, i = _python_block(lines, i + 1, rules)
        if exc is not None:
            exc.relation = relation
            if len(chain) < MAX_CHAIN:
                chain.append(exc)
            # Chained tracebacks: the earlier one is a cause (or context) of the next.
            j = i
            while j < n and not lines[j].strip():
                j += 1
            if j < n and lines[j].strip() in (_PY_CAUSE, _PY_CONTEXT):
                relation = "cause" if lines[j].strip() == _PY_CAUSE else "context"
                i = j + 1
                continue
        if chain:
            traces.append(_python_trace(chain, first, i - 1))
        chain, first, relation = [], -1, "primary"
    if chain:  # a chain cut short: what was parsed still counts
        traces.append(_python_trace(chain, first, n - 1))
    return traces


def _python_trace(chain: list[ParsedException], first: int, last: int) -> Trace:
    """Python prints the root cause first: reverse so the raised one leads, and
    each earlier exception is the cause/context of the one printed after it."""
    ordered = list(reversed(chain))
    relations = [e.relation for e in chain]  # relation of each to the one before it
    for k, exc in enumerate(ordered):
        # ordered[k] == chain[-1-k]; the link to its successor is stored on that successor
        exc.relation = "primary" if k == 0 else relations[len(chain) - k]
    return Trace("python", ordered, first, last)


def _python_block(
    lines: list[str], i: int, rules: LibraryRules
) -> tuple[ParsedException | None, int]:
    # Python prints the outermost call first: keep the last frames, nearest the throw.
    frames: collections.deque[Frame] = collections.deque(maxlen=MAX_FRAMES)
    seen = 0
    repeated = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        m = _PY_FRAME.match(line)
        if m:
            file, function = m.group(1), m.group(3) or "<module>"
            frames.append(
                Frame(function, file, int(m.group(2)), None, rules.is_in_app(function, file, None))
            )
            seen += 1
            i += 1
            continue
        r = _PY_REPEAT.match(line)
        if r:
            repeated += int(r.group(1))
            i += 1
            continue
        if line.startswith((" ", "\t")) or not line.strip():
            i += 1  # source line, caret line, or blank
            continue
        break
    if i >= n:
        if not frames:
            return None, i
        exc = ParsedException("<truncated>", "")
    else:
        m = _PY_EXC.match(lines[i].strip())
        if m is None:
            exc = ParsedException("<unknown>", lines[i].strip()[:MAX_MESSAGE])
        else:
            exc = ParsedException(m.group(1), (m.group(2) or "")[:MAX_MESSAGE])
        i += 1
    exc.frames = list(reversed(frames))
    exc.omitted = repeated + seen - len(frames)
    return exc, i


# -- Java / .NET / Node.js: "at ..." frames ---------------------------------------------------

_AT = re.compile(r"^\s+at (.+?)(?: \{)?\s*$")
_JAVA_SRC = re.compile(
    r"^(?:([\w$.-]+\.(?:java|kt|kts|scala|groovy|clj|jsp))(?::(\d+))?"
    r"|Native Method|Unknown Source)$"
)
_DOTNET_CALL = re.compile(
    r"^([\w.`<>+|\[\],]+?)\.([\w`<>|]+(?:\[[^\]]*\])?)\(([^()]*)\)(?: in (.+):line (\d+))?$"
)
_JAVA_HEADER = re.compile(r"(?:^|: |\s)((?:[a-zA-Z_$][\w$]*\.)+[A-Z][\w$]*)(?:: (.*))?$")
_SIMPLE_HEADER = re.compile(
    r"^(?:Uncaught )?((?:[A-Z][\w$.]*)?(?:Error|Exception))(?:(?:: | \[[^\]]*\]: )(.*))?$"
)
_MORE = re.compile(r"^\s*\.\.\. (\d+) (?:more|common frames omitted|lines matching)")
_CAUSED = re.compile(r"^\s*(Caused by|Suppressed|\[cause\]): (.*)$")
_DOTNET_INNER = re.compile(r"^\s*---> (.*)$")
_DOTNET_UNHANDLED = re.compile(r"^(?:Unhandled [eE]xception[.:]\s*)")


def _parse_call(call: str, rules: LibraryRules) -> tuple[str, Frame] | None:
    """One `at …` frame: Java, then Node.js, then .NET. String splitting first (a
    frame line is parsed for every frame of every trace), a regex only for .NET."""
    if call.endswith(")"):
        name, _, src = call[:-1].rpartition("(")
        sm = _JAVA_SRC.match(src) if name and ")" not in src else None
        if sm is not None:
            loader, slash, qualified = name.rpartition("/")
            cls, dot, method = qualified.rpartition(".")
            if dot and cls and " " not in qualified:
                file = sm.group(1)
                line = int(sm.group(2)) if sm.group(2) else None
                in_app = rules.is_in_app(qualified, file, cls) and not (
                    slash and loader.startswith(("java.", "jdk."))
                )
                return "java", Frame(method, file, line, cls, in_app)
    node = _node_call(call)
    if node is not None:
        function, file, line = node
        return "node", Frame(function, file, line, None, rules.is_in_app(function, file, None))
    m = _DOTNET_CALL.match(call)
    if m is not None:
        cls, method, file = m.group(1), m.group(2), m.group(4)
        line = int(m.group(5)) if m.group(5) else None
        frame = Frame(method, file, line, cls, rules.is_in_app(f"{cls}.{method}", file, cls))
        return "dotnet", frame
    return None


def _node_call(call: str) -> tuple[str, str, int] | None:
    """`fn (file:line:col)` or `file:line:col`."""
    if call.endswith(")"):
        function, sep, location = call[:-1].rpartition(" (")
        if not sep:
            return None
    else:
        function, location = "<anonymous>", call
    rest, sep, column = location.rpartition(":")
    if not sep or not column.isdigit():
        return None
    file, sep, line = rest.rpartition(":")
    if not sep or not line.isdigit() or not file:
        return None
    for prefix in ("async ", "new "):
        if function.startswith(prefix):
            function = function[len(prefix) :]
    if file.startswith("file://"):
        file = file[7:]
    return function or "<anonymous>", file, int(line)


def _header(lines: list[str], i: int, stop: int) -> tuple[str, str, int]:
    """The exception line(s) just above the first frame at `i`: the type is on the
    nearest line naming one (messages may span lines); text before it on that line
    (a log prefix) is not part of the trace."""
    for j in range(i - 1, max(stop, i - 12) - 1, -1):
        raw = lines[j].strip()
        if not raw:
            break
        text = _DOTNET_UNHANDLED.sub("", raw)
        if text.startswith('Exception in thread "'):
            text = text.split('" ', 1)[-1]
        m = _SIMPLE_HEADER.match(text) or _JAVA_HEADER.search(text)
        if m:
            message = "\n".join([m.group(2) or "", *(lines[k].strip() for k in range(j + 1, i))])
            return m.group(1), message.strip()[:MAX_MESSAGE], j
    if i > stop and lines[i - 1].strip():
        return "<unknown>", lines[i - 1].strip()[:MAX_MESSAGE], i - 1
    return "<unknown>", "", i


def _split_type(text: str) -> tuple[str, str]:
    text = _DOTNET_UNHANDLED.sub("", text.strip())
    m = _SIMPLE_HEADER.match(text) or _JAVA_HEADER.match(text)
    if m:
        return m.group(1), (m.group(2) or "")[:MAX_MESSAGE]
    type_, _, message = text.partition(": ")
    return type_[:200] or "<unknown>", message[:MAX_MESSAGE]


def _at_frames(lines: list[str], rules: LibraryRules) -> list[Trace]:
    traces: list[Trace] = []
    i, n = 0, len(lines)
    stop = 0  # lines above this belong to an earlier trace
    while i < n:
        m = _AT.match(lines[i])
        found = _parse_call(m.group(1), rules) if m else None
        if found is None:
            i += 1
            continue
        runtime = found[0]
        heads, start = _headers(lines, i, stop)
        exceptions = [
            ParsedException(t, msg, relation="cause" if k else "primary")
            for k, (t, msg) in enumerate(heads)
        ]
        if len(heads) > 1:
            runtime = "dotnet"
        depth = len(exceptions) - 1
        current = exceptions[depth]
        last = i
        while i < n:
            line = lines[i]
            m = _AT.match(line)
            found = _parse_call(m.group(1), rules) if m else None
            if found is not None:
                current.add(found[1])
                if found[0] == "dotnet":
                    runtime = "dotnet"
                last = i
                i += 1
                continue
            more = _MORE.match(line)
            if more:
                current.omitted += int(more.group(1))
                last = i
                i += 1
                continue
            caused = _CAUSED.match(line)
            inner = _DOTNET_INNER.match(line) if caused is None else None
            if caused or inner:
                text = caused.group(2) if caused else inner.group(1)  # type: ignore[union-attr]
                t, msg = _split_type(text)
                relation = "suppressed" if caused and caused.group(1) == "Suppressed" else "cause"
                current = ParsedException(t, msg, relation=relation)
                if inner:
                    runtime = "dotnet"
                if len(exceptions) < MAX_CHAIN:
                    exceptions.append(current)
                    depth = len(exceptions) - 1
                last = i
                i += 1
                continue
            if "--- End of" in line:  # .NET inner-exception / async boundaries
                runtime = "dotnet"
                if "inner exception" in line and depth > 0:
                    # The outer exception's frames follow its inner one's.
                    depth -= 1
                    current = exceptions[depth]
                last = i
                i += 1
                continue
            break
        traces.append(Trace(runtime, exceptions, start, last))
        stop = last + 1
        i = last + 1
    return traces


def _headers(lines: list[str], i: int, stop: int) -> tuple[list[tuple[str, str]], int]:
    """Header(s) above the first frame, outermost first: .NET prints an exception's
    inner ones right under it as ` ---> Type: message` lines."""
    inner: list[tuple[str, str]] = []
    j = i
    while j - 1 >= stop:
        m = _DOTNET_INNER.match(lines[j - 1])
        if m is None:
            break
        inner.append(_split_type(m.group(1)))
        j -= 1
    type_, message, start = _header(lines, j, stop)
    return [(type_, message), *reversed(inner)], start


# -- Go ------------------------------------------------------------------------------------

_GO_PANIC = re.compile(r"^(panic|fatal error): (.*?)(?: \[recovered\])?$")
_GO_GOROUTINE = re.compile(r"^goroutine (\d+) (?:gp=\S+ m=\S+ mp=\S+ )?\[([^\]]*)\]:$")
_GO_FUNC = re.compile(r"^(created by )?([^\s(]\S*?)(?:\(([^()]*)\))?(?: in goroutine \d+)?$")
_GO_FILE = re.compile(r"^\t(.+?):(\d+)(?: \+0x[0-9a-f]+)?$")
# Runtime errors (runtime.plainError) that Go prints without the "runtime error:" prefix.
_GO_PLAIN_ERRORS = (
    "assignment to entry in nil map",
    "close of nil channel",
    "close of closed channel",
    "send on closed channel",
    "all goroutines are asleep",
    "makeslice: len out of range",
    "makeslice: cap out of range",
    "makechan: size out of range",
)
_GO_CALLER = re.compile(r"([a-z]\w*(?:/\w+)*\.[A-Za-z_]\w*(?:\.\w+)?): ")
_GO_RUNTIME_ERR = re.compile(r"^runtime error: ([^\[\]\d]*?)(?:\s*\[.*)?$")


def _go(lines: list[str], rules: LibraryRules) -> list[Trace]:
    traces: list[Trace] = []
    i, n = 0, len(lines)
    while i < n:
        m = _GO_PANIC.match(lines[i].strip())
        if m is None:
            i += 1
            continue
        start = i
        kind, message = m.group(1), m.group(2)
        rt = _GO_RUNTIME_ERR.match(message)
        if kind == "fatal error":
            type_ = "fatal error"
        elif rt:
            type_ = "runtime error: " + rt.group(1).strip()
        elif message.startswith("runtime error:"):
            type_ = "runtime error"
        elif message.startswith(_GO_PLAIN_ERRORS):
            type_ = "runtime error: " + message  # runtime.Error values printed bare
        else:
            # `panic(err)` of a wrapped error often starts with the failing call
            # (`strconv.Atoi: parsing "x": invalid syntax`): that names the failure.
            head = _GO_CALLER.match(message)
            type_ = head.group(1) if head else "panic"
        exc = ParsedException(type_, message[:MAX_MESSAGE])
        # Find the first goroutine header; its frames are the panicking goroutine.
        j = i + 1
        while j < n and j - i < 20 and not _GO_GOROUTINE.match(lines[j]):
            j += 1
        if j >= n or not _GO_GOROUTINE.match(lines[j]):
            i += 1
            continue
        j += 1
        last = j - 1
        first_goroutine = True
        while j < n:
            line = lines[j]
            fm = _GO_FUNC.match(line) if line and not line.startswith("\t") else None
            if fm and j + 1 < n:
                loc = _GO_FILE.match(lines[j + 1])
                if loc:
                    if first_goroutine and not fm.group(1):
                        exc.add(_go_frame(fm.group(2), loc.group(1), int(loc.group(2)), rules))
                    last = j + 1
                    j += 2
                    continue
            if not line.strip():
                # A blank line ends the goroutine; more goroutines may follow (a dump).
                k = j + 1
                if k < n and _GO_GOROUTINE.match(lines[k]):
                    first_goroutine = False
                    last = k
                    j = k + 1
                    continue
                break
            if line.startswith("...") or ("goroutine" in line and "frames elided" in line):
                last = j
                j += 1
                continue
            break
        traces.append(Trace("go", [exc], start, last))
        i = last + 1
    return traces


def _go_frame(function: str, file: str, line: int, rules: LibraryRules) -> Frame:
    # "net/http.(*conn).serve" → package path "net/http"
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    package = function[:dot] if dot > 0 else function
    std = "." not in package.split("/", 1)[0] and package != "main" and f"/src/{package}/" in file
    return Frame(
        function, file, line, package, not std and rules.is_in_app(function, file, package)
    )


# -- Ruby -------------------------------------------------------------------------------

_RUBY_TOP = re.compile(r"^(.+?):(\d+):in [`']([^']*)': (.*?)(?: \(([A-Z][\w:]*)\))?$")
_RUBY_FROM = re.compile(r"^\s+from (.+?):(\d+):in [`']([^']*)'$")


def _ruby(lines: list[str], rules: LibraryRules) -> list[Trace]:
    traces: list[Trace] = []
    i, n = 0, len(lines)
    while i < n:
        m = _RUBY_TOP.match(lines[i].strip())
        if m is None or i + 1 >= n or not _RUBY_FROM.match(lines[i + 1]):
            i += 1
            continue
        file, line, function, message, type_ = m.groups()
        exc = ParsedException(type_ or "RuntimeError", message[:MAX_MESSAGE])
        exc.add(Frame(function, file, int(line), None, rules.is_in_app(function, file, None)))
        start = i
        i += 1
        while i < n:
            fm = _RUBY_FROM.match(lines[i])
            if fm is None:
                break
            f, ln, fn = fm.groups()
            exc.add(Frame(fn, f, int(ln), None, rules.is_in_app(fn, f, None)))
            i += 1
        traces.append(Trace("ruby", [exc], start, i - 1))
    return traces
