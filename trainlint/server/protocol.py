"""The LSP side of ``trainlint server``, on pygls: document sync (text files and notebook
documents), debounced diagnostics, code actions (fixes, ``# noqa``, fix all) and hover
(the rule's page).

Checks run one at a time on a worker thread, so the server keeps answering while a large
file is analysed; a result is published only if the document has not changed since.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from trainlint import __version__
from trainlint.catalogue import page_for
from trainlint.diagnostics import Diagnostic, Severity
from trainlint.reporters.sarif import PAGES_URL
from trainlint.server.workspace import Cell, Document, TextEdit, Workspace, minimal_edit, noqa_edit
from trainlint.sources import split_lines

SOURCE = "trainlint"
WATCHED = ("**/*.py", "**/pyproject.toml", "**/trainlint.toml", "**/.trainlint.toml")
FIX_ALL = f"{types.CodeActionKind.SourceFixAll.value}.trainlint"
_SEVERITY = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
    Severity.INFO: types.DiagnosticSeverity.Information,
}

log = logging.getLogger(__name__)


class TrainlintServer(LanguageServer):
    def __init__(self, debounce: float) -> None:
        super().__init__(
            "trainlint",
            __version__,
            # Whole documents on every change: simple, and line breaks stay Python's.
            text_document_sync_kind=types.TextDocumentSyncKind.Full,
            notebook_document_sync=types.NotebookDocumentSyncOptions(
                notebook_selector=[
                    types.NotebookDocumentFilterWithCells(
                        cells=[types.NotebookCellLanguage(language="python")], notebook="jupyter-notebook"
                    )
                ],
                save=True,
            ),
        )
        self.debounce = debounce
        self.state = Workspace()
        self.uris: dict[Path, str] = {}  # open document -> its URI (notebooks: the notebook's)
        self.cell_uris: dict[Path, list[str]] = {}  # notebook -> its cells' URIs, in order
        self.published: dict[str, list[tuple[types.Diagnostic, Diagnostic]]] = {}
        self._pending: dict[Path, asyncio.TimerHandle] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainlint-check")

    # -- scheduling -----------------------------------------------------------------------------

    def schedule(self, paths: list[Path], delay: float) -> None:
        loop = asyncio.get_running_loop()
        for path in paths:
            handle = self._pending.pop(path, None)
            if handle is not None:
                handle.cancel()
            self._pending[path] = loop.call_later(delay, self._start_check, path)

    def _start_check(self, path: Path) -> None:
        asyncio.ensure_future(self._check(path))

    async def _check(self, path: Path) -> None:
        self._pending.pop(path, None)
        document = self.state.documents.get(path)
        if document is None:
            return
        version = document.version
        try:
            checked = await asyncio.get_running_loop().run_in_executor(self._executor, self.state.check, path)
        except Exception:  # noqa: BLE001 - a crash must not take the server down
            log.exception("trainlint: checking %s failed", path)
            return
        current = self.state.documents.get(path)
        if current is None or current.version != version:
            return  # edited meanwhile: a newer check is scheduled
        self._publish(path, checked.result.diagnostics)

    def _publish(self, path: Path, diagnostics: list[Diagnostic]) -> None:
        document = self.state.documents[path]
        targets = self.cell_uris.get(path) or [self.uris[path]]
        by_uri: dict[str, list[tuple[types.Diagnostic, Diagnostic]]] = {uri: [] for uri in targets}
        for diagnostic in diagnostics:
            uri, text = self._where(path, document, diagnostic)
            if uri in by_uri:
                by_uri[uri].append((_to_lsp(diagnostic, text, self), diagnostic))
        for uri, pairs in by_uri.items():
            self.published[uri] = pairs
            self.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=[lsp for lsp, _ in pairs])
            )

    def _where(self, path: Path, document: Document, diagnostic: Diagnostic) -> tuple[str, str]:
        """The URI and text of the document (or notebook cell) a finding is in."""
        if diagnostic.cell is None or not document.cells:
            return self.uris[path], document.text
        index = diagnostic.cell - 1
        if 0 <= index < len(document.cells):
            return document.cells[index].uri, document.cells[index].text
        return self.uris[path], ""

    def clear(self, uris: list[str]) -> None:
        for uri in uris:
            self.published.pop(uri, None)
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    # -- notebooks ------------------------------------------------------------------------------

    def load_notebook(self, uri: str, version: int) -> Path:
        notebook = self.workspace.get_notebook_document(notebook_uri=uri)
        path = uri_to_path(uri)
        cells: list[Cell] = []
        if notebook is not None:
            for cell in notebook.cells:
                document = self.workspace.get_text_document(cell.document)
                code = cell.kind == types.NotebookCellKind.Code and document.language_id in (None, "python")
                cells.append(Cell(cell.document, code, document.source))
        self.uris[path] = uri
        self.cell_uris[path] = [cell.uri for cell in cells]
        self.state.open(Document(path, version=version, cells=cells))
        return path

    # -- code actions and hover -------------------------------------------------------------------

    def code_actions(self, uri: str, range_: types.Range, only: list[str] | None) -> list[types.CodeAction]:
        path, text = self._document_of(uri)
        if path is None:
            return []
        in_range = [(lsp, d) for lsp, d in self.published.get(uri, []) if _overlaps(lsp.range, range_)]
        actions: list[types.CodeAction] = []
        wants = (lambda kind: not only or any(kind.startswith(o) for o in only))
        if wants(types.CodeActionKind.QuickFix.value) and in_range:
            fixes = {id(d): fixed for d, fixed in self._fixes_by_finding(path, in_range)}
            for lsp, diagnostic in in_range:
                fixed = fixes.get(id(diagnostic))
                if fixed is not None:
                    actions.append(self._fix_action(uri, text, lsp, diagnostic, fixed))
            for lsp, diagnostic in in_range:
                action = self._noqa_action(uri, text, lsp, diagnostic)
                if action is not None:
                    actions.append(action)
        if wants(FIX_ALL) and path.suffix != ".ipynb" and not self.cell_uris.get(path):
            fixed_all = self.state.fix_all(path)
            if fixed_all is not None:
                edit = self._workspace_edit(uri, text, minimal_edit(text, fixed_all))
                actions.append(types.CodeAction(title="trainlint: fix all safe findings", kind=FIX_ALL, edit=edit))
        return actions

    def _fixes_by_finding(
        self, path: Path, in_range: list[tuple[types.Diagnostic, Diagnostic]]
    ) -> list[tuple[Diagnostic, str]]:
        """The published findings in range that have a fix, each with its fixed text."""
        candidates = self.state.fixes(path)
        found = []
        for _, diagnostic in in_range:
            for candidate, fixed in candidates:
                if (candidate.code, candidate.span) == (diagnostic.code, diagnostic.span):
                    found.append((diagnostic, fixed))
                    break
        return found

    def _fix_action(
        self, uri: str, text: str, lsp: types.Diagnostic, diagnostic: Diagnostic, fixed: str
    ) -> types.CodeAction:
        safe = diagnostic.fix == "safe"
        title = f"trainlint: fix {diagnostic.code} ({diagnostic.name})" + ("" if safe else " [unsafe: review the change]")
        return types.CodeAction(
            title=title,
            kind=types.CodeActionKind.QuickFix,
            diagnostics=[lsp],
            is_preferred=safe,
            edit=self._workspace_edit(uri, text, minimal_edit(text, fixed)),
        )

    def _noqa_action(self, uri: str, text: str, lsp: types.Diagnostic, diagnostic: Diagnostic) -> types.CodeAction | None:
        if diagnostic.code == "TL000":
            return None
        edit = noqa_edit(text, diagnostic.line, [diagnostic.code])
        if edit is None:
            return None
        return types.CodeAction(
            title=f"trainlint: add `# noqa: {diagnostic.code}` on this line",
            kind=types.CodeActionKind.QuickFix,
            diagnostics=[lsp],
            edit=self._workspace_edit(uri, text, edit),
        )

    def _workspace_edit(self, uri: str, text: str, edit: TextEdit) -> types.WorkspaceEdit:
        lines = split_lines(text)
        codec = self.workspace.position_codec
        start = codec.position_to_client_units(lines, types.Position(*edit.start))
        end = codec.position_to_client_units(lines, types.Position(*edit.end))
        return types.WorkspaceEdit(changes={uri: [types.TextEdit(range=types.Range(start, end), new_text=edit.text)]})

    def hover(self, uri: str, position: types.Position) -> types.Hover | None:
        pages = []
        for lsp, diagnostic in self.published.get(uri, []):
            if _contains(lsp.range, position):
                page = page_for(diagnostic.code)
                if page is not None:
                    pages.append(page.read_text(encoding="utf-8"))
        if not pages:
            return None
        content = types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n---\n\n".join(dict.fromkeys(pages)))
        return types.Hover(contents=content)

    def _document_of(self, uri: str) -> tuple[Path | None, str]:
        """The open document (or notebook) holding ``uri``, and the text of ``uri``."""
        for path, cells in self.cell_uris.items():
            if uri in cells:
                return path, self.state.documents[path].cells[cells.index(uri)].text
        path = uri_to_path(uri)
        found = self.state.documents.get(path)
        return (path, found.text) if found is not None else (None, "")


def _to_lsp(diagnostic: Diagnostic, text: str, server: TrainlintServer) -> types.Diagnostic:
    lines = split_lines(text)
    codec = server.workspace.position_codec
    span = diagnostic.span
    start = codec.position_to_client_units(lines, types.Position(span.line - 1, span.column - 1))
    end = codec.position_to_client_units(lines, types.Position(span.end_line - 1, span.end_column - 1))
    page = page_for(diagnostic.code)
    return types.Diagnostic(
        range=types.Range(start, end),
        message=f"{diagnostic.message}\nhint: {diagnostic.hint}" if diagnostic.hint else diagnostic.message,
        severity=_SEVERITY[diagnostic.severity],
        code=diagnostic.code,
        code_description=types.CodeDescription(href=PAGES_URL + page.name) if page is not None else None,
        source=SOURCE,
        data={"fix": diagnostic.fix.value if hasattr(diagnostic.fix, "value") else diagnostic.fix, "name": diagnostic.name},
    )


def _overlaps(a: types.Range, b: types.Range) -> bool:
    return (a.start.line, a.start.character) <= (b.end.line, b.end.character) and (
        b.start.line, b.start.character) <= (a.end.line, a.end.character)


def _contains(a: types.Range, position: types.Position) -> bool:
    return _overlaps(a, types.Range(position, position))


def uri_to_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    # Untitled buffers and other schemes: a name to report under, never read from disk.
    return Path(unquote(parsed.path or uri).rsplit("/", 1)[-1] or "untitled.py")


def build(debounce: float) -> TrainlintServer:
    server = TrainlintServer(debounce)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: TrainlintServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        path = uri_to_path(item.uri)
        ls.uris[path] = item.uri
        ls.state.open(Document(path, item.text, item.version))
        ls.schedule([path], 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: TrainlintServer, params: types.DidChangeTextDocumentParams) -> None:
        path = uri_to_path(params.text_document.uri)
        if path not in ls.state.documents:
            return
        text = ls.workspace.get_text_document(params.text_document.uri).source
        ls.state.open(Document(path, text, params.text_document.version))
        ls.schedule(ls.state.affected_by(path), ls.debounce)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: TrainlintServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.schedule(ls.state.affected_by(uri_to_path(params.text_document.uri)), 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: TrainlintServer, params: types.DidCloseTextDocumentParams) -> None:
        path = uri_to_path(params.text_document.uri)
        ls.state.close(path)
        ls.uris.pop(path, None)
        ls.clear([params.text_document.uri])

    @server.feature(types.INITIALIZED)
    def initialized(ls: TrainlintServer, params: types.InitializedParams) -> None:
        # Files changed outside the editor (a `git pull`, another editor) re-check the open
        # files that depend on them, and a changed configuration re-checks everything.
        workspace = ls.client_capabilities.workspace
        watching = workspace.did_change_watched_files if workspace is not None else None
        if watching is None or not watching.dynamic_registration:
            return
        watchers = [types.FileSystemWatcher(glob_pattern=pattern) for pattern in WATCHED]
        options = types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers)
        registration = types.Registration(id="trainlint-watch", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options)
        ls.client_register_capability(types.RegistrationParams(registrations=[registration]))

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched(ls: TrainlintServer, params: types.DidChangeWatchedFilesParams) -> None:
        affected = {p for change in params.changes for p in ls.state.affected_by(uri_to_path(change.uri))}
        ls.schedule(sorted(affected), ls.debounce)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_OPEN)
    def notebook_open(ls: TrainlintServer, params: types.DidOpenNotebookDocumentParams) -> None:
        ls.schedule([ls.load_notebook(params.notebook_document.uri, params.notebook_document.version)], 0)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_CHANGE)
    def notebook_change(ls: TrainlintServer, params: types.DidChangeNotebookDocumentParams) -> None:
        before = ls.cell_uris.get(uri_to_path(params.notebook_document.uri), [])
        path = ls.load_notebook(params.notebook_document.uri, params.notebook_document.version)
        ls.clear([uri for uri in before if uri not in ls.cell_uris[path]])
        ls.schedule([path], ls.debounce)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_SAVE)
    def notebook_save(ls: TrainlintServer, params: types.DidSaveNotebookDocumentParams) -> None:
        ls.schedule([uri_to_path(params.notebook_document.uri)], 0)

    @server.feature(types.NOTEBOOK_DOCUMENT_DID_CLOSE)
    def notebook_close(ls: TrainlintServer, params: types.DidCloseNotebookDocumentParams) -> None:
        path = uri_to_path(params.notebook_document.uri)
        ls.state.close(path)
        ls.clear(ls.cell_uris.pop(path, []))

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, FIX_ALL], resolve_provider=False),
    )
    def code_action(ls: TrainlintServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        only = [str(kind) for kind in params.context.only] if params.context.only else None
        return ls.code_actions(params.text_document.uri, params.range, only)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: TrainlintServer, params: types.HoverParams) -> types.Hover | None:
        return ls.hover(params.text_document.uri, params.position)

    return server


def serve(debounce: float) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    build(debounce).start_io()
