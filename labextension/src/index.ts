/**
 * podmagic's JupyterLab extension: `%%pod` cells as YAML with unknown keys
 * marked, the Pods panel, the status bar item, and cell logs that follow
 * their newest line like a terminal.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  EditorExtensionRegistry,
  IEditorExtensionRegistry,
  IEditorLanguageRegistry
} from '@jupyterlab/codemirror';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import type { Extension } from '@codemirror/state';

import { fetchSchema } from './api';
import { installLogFollow } from './logfollow';
import { PodsPanel } from './panel';
import { podCellExtension } from './podcell';
import { RunsModel } from './model';
import { PodSchema } from './schema';
import { PodsStatusItem } from './statusitem';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<path d="M4 6h16v4H4zm0 6h16v4H4zm2 1.5v1h2v-1zm0-6v1h2v-1zM4 18h16v2H4z"/></g></svg>';

const podsIcon = new LabIcon({ name: 'podmagic:pods', svgstr: ICON_SVG });

const SCHEMA_TIMEOUT_MS = 5000;

/** `promise`, or a rejection after `ms` milliseconds. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    promise.then(
      value => {
        clearTimeout(timer);
        resolve(value);
      },
      reason => {
        clearTimeout(timer);
        reject(reason);
      }
    );
  });
}

/** `%%pod` cells: YAML highlighting and unknown-key marks. */
const editorPlugin: JupyterFrontEndPlugin<void> = {
  id: 'podmagic:editor',
  description: 'Highlights %%pod cells as YAML and marks unknown keys.',
  autoStart: true,
  requires: [IEditorExtensionRegistry, IEditorLanguageRegistry],
  activate: async (
    app: JupyterFrontEnd,
    extensions: IEditorExtensionRegistry,
    languages: IEditorLanguageRegistry
  ) => {
    // Activation waits for these (editors opened later get the extension),
    // so bound the wait: without the server extension, cells are still YAML.
    const [yaml, schema] = await Promise.all([
      languages.getLanguage('yaml').catch(() => null),
      withTimeout(fetchSchema(), SCHEMA_TIMEOUT_MS).catch((reason): PodSchema | null => {
        console.warn('podmagic: no schema from the server extension', reason);
        return null;
      })
    ]);
    const extension = podCellExtension((yaml?.support as Extension) ?? null, schema);
    extensions.addExtension({
      name: 'podmagic:pod-cell',
      factory: () => EditorExtensionRegistry.createImmutableExtension(extension)
    });
  }
};

/** The Pods panel and the status bar item. */
const podsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'podmagic:pods',
  description: 'A Pods panel and a live-pods status bar item.',
  autoStart: true,
  optional: [ILabShell, IStatusBar],
  activate: (app: JupyterFrontEnd, labShell: ILabShell | null, statusBar: IStatusBar | null) => {
    const model = new RunsModel();
    const panel = new PodsPanel(model, (command, args) => void app.commands.execute(command, args));
    panel.title.icon = podsIcon;
    app.shell.add(panel, 'left', { rank: 900 });
    void model.refresh();
    if (statusBar) {
      const item = new PodsStatusItem(model, () => app.shell.activateById(panel.id));
      statusBar.registerStatusItem('podmagic:pods-status', {
        item,
        align: 'left',
        rank: 100,
        isActive: () => true
      });
    }
  }
};

/** Live logs in cell outputs stay at the newest line unless scrolled up. */
const logPlugin: JupyterFrontEndPlugin<void> = {
  id: 'podmagic:log-follow',
  description: 'Keeps podmagic live logs at their newest line unless the user scrolled up.',
  autoStart: true,
  activate: () => {
    installLogFollow(document);
  }
};

export default [editorPlugin, podsPlugin, logPlugin];
