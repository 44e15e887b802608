/**
 * The CodeMirror 6 side of `%%pod` cells: a cell whose first line starts
 * with `%%pod` is highlighted as YAML (the editor language registry's YAML,
 * at highest precedence, plus `tok-*` classes), and keys the schema does not
 * know are marked as the user types.
 */
import { Compartment, Extension, Prec, RangeSetBuilder } from '@codemirror/state';
import {
  Decoration,
  DecorationSet,
  EditorView,
  ViewPlugin,
  ViewUpdate
} from '@codemirror/view';
import { syntaxHighlighting } from '@codemirror/language';
import { classHighlighter } from '@lezer/highlight';

import { isPodCell, PodSchema, unknownKeys } from './schema';

/** Class of a `%%pod` editor and of an unknown-key mark. */
export const POD_EDITOR_CLASS = 'pm-pod-cell';
export const UNKNOWN_KEY_CLASS = 'pm-unknown-key';

const podLanguage = new Compartment();

function firstLine(view: EditorView): string {
  return view.state.doc.line(1).text;
}

/** Switches the editor's language to YAML while its first line is `%%pod`. */
function languageSwitcher(yaml: Extension): Extension {
  const podExtension = [Prec.highest(yaml), syntaxHighlighting(classHighlighter), EditorView.editorAttributes.of({ class: POD_EDITOR_CLASS })];
  return ViewPlugin.fromClass(
    class {
      private pod = false;

      constructor(view: EditorView) {
        this.sync(view);
      }

      update(update: ViewUpdate): void {
        if (update.docChanged) {
          this.sync(update.view);
        }
      }

      private sync(view: EditorView): void {
        const pod = isPodCell(firstLine(view));
        if (pod === this.pod) {
          return;
        }
        this.pod = pod;
        // Reconfiguring during an update is not allowed: defer it.
        Promise.resolve().then(() => {
          try {
            view.dispatch({ effects: podLanguage.reconfigure(pod ? podExtension : []) });
          } catch (reason) {
            console.warn('podmagic: could not switch the cell language', reason);
          }
        });
      }
    }
  );
}

/** Marks keys unknown to the schema, recomputed on every edit. */
function unknownKeyMarker(schema: PodSchema): Extension {
  const compute = (view: EditorView): DecorationSet => {
    const text = view.state.doc.toString();
    const builder = new RangeSetBuilder<Decoration>();
    if (!isPodCell(text)) {
      return builder.finish();
    }
    for (const problem of unknownKeys(text, schema)) {
      const mark = Decoration.mark({
        class: UNKNOWN_KEY_CLASS,
        attributes: { title: problem.message, 'data-pm-key': problem.key }
      });
      builder.add(problem.from, problem.to, mark);
    }
    return builder.finish();
  };
  return ViewPlugin.fromClass(
    class {
      decorations: DecorationSet;

      constructor(view: EditorView) {
        this.decorations = compute(view);
      }

      update(update: ViewUpdate): void {
        if (update.docChanged) {
          this.decorations = compute(update.view);
        }
      }
    },
    { decorations: plugin => plugin.decorations }
  );
}

/** Everything a `%%pod`-aware editor needs; `yaml` may be null if not found. */
export function podCellExtension(yaml: Extension | null, schema: PodSchema | null): Extension {
  const parts: Extension[] = [podLanguage.of([])];
  if (yaml) {
    parts.push(languageSwitcher(yaml));
  }
  if (schema) {
    parts.push(unknownKeyMarker(schema));
  }
  return parts;
}
