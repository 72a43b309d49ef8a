"""The prompt panel (left) and the label bar (under the comparison)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from inspector.findings import LABEL_WORDS, LABELS, LIKENESS_ONLY, MEMORIZED, label_meaning
from inspector.gui.plain import PlainLabel, plain_tooltip
from inspector.limits import MAX_WINDOW_IMAGES


class PromptPanel(QWidget):
    """Prompt, negative prompt, N, seed, steps, guidance; Generate (Ctrl+Enter) and Cancel (Esc); progress."""

    generate_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("What should the model draw? e.g. a name, a title, a caption")
        self.prompt.setFixedHeight(70)
        self.prompt.setAccessibleName("Prompt")
        self.prompt.setToolTip("The text prompt. Ctrl+Enter generates.")
        # Words the model cannot read, checked as the prompt is typed; after a run also the matching captions.
        # Plain text: the words are the user's own, never markup.
        self.word_notes = PlainLabel("")
        self.word_notes.setWordWrap(True)
        self.word_notes.setAccessibleName("What the model can read of the prompt")
        self.word_notes.setToolTip("From the model's tokenizer (checked while you type) and, after a run, the "
                                   "captions in the index.")
        self.word_notes.setVisible(False)
        self.negative = QLineEdit()
        self.negative.setPlaceholderText("optional: what to avoid")
        self.negative.setToolTip("Negative prompt: guidance pushes away from it (leave empty if unsure).")
        self.n = QSpinBox()
        self.n.setRange(1, MAX_WINDOW_IMAGES)
        self.n.setValue(16)
        self.n.setToolTip("How many images to generate, one seed each (Carlini et al. used 500 per prompt).")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("First seed; image k uses seed + k, so any image can be made again exactly.")
        self.steps = QSpinBox()
        self.steps.setRange(1, 200)
        self.steps.setValue(25)
        self.steps.setToolTip("Sampling steps per image (more = slower, usually cleaner).")
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(1.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setValue(2.0)
        self.guidance.setToolTip("Guidance scale: how strongly the prompt steers the image. 1 = not at all.")
        self.wen = QCheckBox("Wen score")
        self.wen.setChecked(True)
        self.wen.setToolTip("Also compute Wen et al.'s memorization score for the prompt (a few extra model calls).")
        self.generate = QPushButton("Generate  (Ctrl+Enter)")
        self.generate.setDefault(True)
        self.generate.clicked.connect(self.generate_requested)
        self.cancel = QPushButton("Cancel  (Esc)")
        self.cancel.setEnabled(False)
        self.cancel.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.status = PlainLabel("")  # quotes the prompt's words
        self.status.setWordWrap(True)
        self.suggestions_box = QVBoxLayout()
        self.suggestions_title = QLabel("<b>Try a demo prompt</b>")
        self.suggestions_title.setVisible(False)

        form = QFormLayout()
        form.addRow("N images", self.n)
        form.addRow("First seed", self.seed)
        form.addRow("Steps", self.steps)
        form.addRow("Guidance", self.guidance)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate, 2)
        buttons.addWidget(self.cancel, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("<b>Prompt</b>"))
        lay.addWidget(self.prompt)
        lay.addWidget(self.word_notes)
        lay.addWidget(QLabel("Negative prompt"))
        lay.addWidget(self.negative)
        lay.addLayout(form)
        lay.addWidget(self.wen)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addSpacing(12)
        lay.addWidget(self.suggestions_title)
        lay.addLayout(self.suggestions_box)
        lay.addStretch(1)
        self.setMaximumWidth(300)

    def set_suggestions(self, prompts: dict[str, list[str]]) -> None:
        """One-click example prompts, each with what it shows."""
        while self.suggestions_box.count():
            w = self.suggestions_box.takeAt(0).widget()
            if w:
                w.deleteLater()
        for kind, items in prompts.items():  # the demo's prompt kinds are named after the labels they show
            for text in items:
                b = QPushButton(f"{text}  ({LABEL_WORDS.get(kind, kind).lower()})")
                b.setFlat(True)
                b.setStyleSheet("text-align: left; color: palette(link)")
                b.setToolTip(plain_tooltip(f"Put “{text}” in the prompt and generate ({kind} in the demo)"))
                b.clicked.connect(lambda _=False, t=text: self._use(t))
                self.suggestions_box.addWidget(b)
        self.suggestions_title.setVisible(bool(prompts))

    def set_word_notes(self, notes: list[str]) -> None:
        """Show the notes about the prompt's words (plain sentences), or hide the area when there are none."""
        self.word_notes.setText("\n".join(f"Note: {n}" for n in notes))
        self.word_notes.setVisible(bool(notes))

    def _use(self, text: str) -> None:
        self.prompt.setPlainText(text)
        self.generate_requested.emit()

    def set_running(self, running: bool) -> None:
        self.generate.setEnabled(not running)
        self.cancel.setEnabled(running)

    def values(self) -> dict:
        return {
            "prompt": self.prompt.toPlainText().strip(),
            "negative_prompt": self.negative.text().strip(),
            "n": self.n.value(),
            "seed": self.seed.value(),
            "steps": self.steps.value(),
            "guidance": self.guidance.value(),
            "wen": self.wen.isChecked(),
        }


class CommitLineEdit(QLineEdit):
    """A line edit that commits with Enter and gives up with Escape, both handing the keyboard back
    (``done``), so that 1 / 2 / 3 label again at once; Escape here never cancels a run."""

    committed = Signal(str)  # Enter: the text as typed
    escaped = Signal()  # Escape: the caller shows the stored text again
    done = Signal()  # after either: give the focus back

    def event(self, event) -> bool:
        from PySide6.QtCore import QEvent

        if event.type() == QEvent.Type.ShortcutOverride and event.key() == Qt.Key.Key_Escape:
            event.accept()  # Escape is ours while typing here, not the window's Cancel
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.committed.emit(self.text())
            self.done.emit()
            return
        if event.key() == Qt.Key.Key_Escape:
            self.escaped.emit()
            self.done.emit()
            return
        super().keyPressEvent(event)


class LabelBar(QWidget):
    """Memorized (1), Likeness only (2), Novel (3), Agree with the suggestion (Enter), Undo (Ctrl+Z); the
    selected finding's label; notes (Enter saves) and reviewer. Each button shows its key. The bar shows what
    ``render`` is given (``inspector.inspector_model.LabelBarState``) and sends what the person asks for."""

    label_requested = Signal(str)
    agree_requested = Signal()
    undo_requested = Signal()
    notes_committed = Signal(str)
    reviewer_changed = Signal(str)
    done_typing = Signal()  # Enter or Escape in notes or reviewer: the keyboard goes back to the findings

    def __init__(self, parent=None):
        super().__init__(parent)
        self.buttons = {}
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        for key, label in enumerate(LABELS, start=1):
            b = QPushButton(f"{key}  {LABEL_WORDS[label]}")
            b.setCheckable(True)  # down: the label the casebook has for the selected finding
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # a click leaves the keyboard where it was
            b.clicked.connect(lambda _=False, lab=label: self.label_requested.emit(lab))
            b.setEnabled(False)
            self.buttons[label] = b
            top.addWidget(b)
        self.agree = QPushButton("Enter  Agree")
        self.agree.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.agree.setToolTip("Label the selected finding as the suggestion says (a likeness? suggestion becomes "
                              "Likeness only). The label is yours all the same.")
        self.agree.setEnabled(False)
        self.agree.clicked.connect(self.agree_requested)
        top.addWidget(self.agree)
        self.undo = QPushButton("Ctrl+Z  Undo")
        self.undo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.undo.setToolTip("Take back the last label given here (the casebook keeps the history).")
        self.undo.clicked.connect(self.undo_requested)
        self.undo.setEnabled(False)
        top.addWidget(self.undo)
        self.state = PlainLabel("")  # the selected finding's label, as the casebook has it
        self.state.setAccessibleName("Label of the selected finding")
        self.state.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        top.addWidget(self.state, 1)
        self.notes = CommitLineEdit()
        self.notes.setPlaceholderText("notes for this finding (N to type, Enter saves)")
        self.notes.setToolTip("Saved to the casebook when you press Enter (Escape: keep the saved notes); also "
                              "saved with the next label.")
        self.notes.setAccessibleName("Notes")
        self.notes.setEnabled(False)
        self.notes.committed.connect(self.notes_committed)
        self.notes.done.connect(self.done_typing)
        self.reviewer = CommitLineEdit()
        self.reviewer.setPlaceholderText("your name")
        self.reviewer.setToolTip("Recorded with every label you give.")
        self.reviewer.setAccessibleName("Reviewer")
        self.reviewer.setMaximumWidth(160)
        self.reviewer.textChanged.connect(self.reviewer_changed)  # the name in force is the one shown
        self.reviewer.done.connect(self.done_typing)
        self._saved_notes = ""
        self.notes.escaped.connect(lambda: self.notes.setText(self._saved_notes))
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(QLabel("Notes"))
        bottom.addWidget(self.notes, 1)
        bottom.addWidget(QLabel("Reviewer"))
        bottom.addWidget(self.reviewer)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addLayout(bottom)
        self.set_role(None)

    def render(self, state) -> None:
        """Show ``state`` (an ``InspectorModel.label_bar_state``): never an old label."""
        for label, b in self.buttons.items():
            b.setEnabled(state.enabled)
            b.setChecked(state.enabled and state.label == label)
        self.agree.setEnabled(state.enabled and state.agree_label is not None)
        self.agree.setText(f"Enter  Agree: {LABEL_WORDS[state.agree_label]}" if state.agree_label else
                           "Enter  Agree")
        self.undo.setEnabled(state.undo_enabled)
        self.undo.setToolTip(plain_tooltip(state.undo_text or "Nothing to undo here yet."))
        self.state.setText(state.text)
        self.notes.setEnabled(state.enabled)
        self._saved_notes = state.notes
        if not self.notes.hasFocus():  # what the person is typing stays until Enter or Escape
            self.notes.setText(state.notes)

    def set_reviewer(self, name: str) -> None:
        if self.reviewer.text().strip() != name:  # a space being typed stays
            self.reviewer.setText(name)

    def set_role(self, role: str | None) -> None:
        """Explain the labels in the words of the index's role: training images, or your reference images."""
        from inspector.roles import role_words

        w = role_words(role)
        for label, b in self.buttons.items():
            meaning = label_meaning(label, w.image, w.images)
            example = {MEMORIZED: " (whole image, small pixel distance)",
                       LIKENESS_ONLY: " (the “Obama” case)"}.get(label, "")
            b.setToolTip(f"{meaning[0].upper()}{meaning[1:]}{example}. Writes to the casebook at once and moves to "
                         "the next unlabeled generation.")

    def set_enabled(self, on: bool) -> None:
        for b in self.buttons.values():
            b.setEnabled(on)
        self.notes.setEnabled(on)
