/**
 * wan_nb for JupyterLab 4 and Notebook 7: the "Wan generations" sidebar, a status-bar item
 * and a video player, fed by the wan_nb server extension's all-tasks event stream.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Clipboard,
  ICommandPalette,
  MainAreaWidget,
  Notification,
  WidgetTracker
} from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';

import { EndNotifier, NotifySetting } from './notify';
import { playerWidget, VideoPlayer } from './player';
import { IRowActions } from './row';
import { GenerationsSidebar } from './sidebar';
import { TaskState } from './state';
import { WanStatusItem } from './statusitem';
import { TaskStore } from './store';

const SIDEBAR_ID = 'wan-nb-generations';
const OPEN_COMMAND = 'wan-nb:open-generations';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
  '<path class="jp-icon3" fill="#616161" d="M4 5h11a2 2 0 0 1 2 2v2.5l4-2.5v10l-4-2.5V17' +
  'a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2zm2 3v8l6-4z"/></svg>';

export const wanIcon = new LabIcon({ name: 'wan-nb:generations', svgstr: ICON_SVG });

/** The run folder of a task relative to the server root ('' = the root), or null. */
export function folderUnderRoot(outputPath: string | null, serverRoot: string): string | null {
  if (!outputPath || !serverRoot || serverRoot.startsWith('~')) {
    return null;
  }
  const root = serverRoot.replace(/\\/g, '/').replace(/\/+$/, '');
  const path = outputPath.replace(/\\/g, '/');
  if (!path.startsWith(root + '/')) {
    return null;
  }
  const rel = path.slice(root.length + 1);
  const cut = rel.lastIndexOf('/');
  return cut < 0 ? '' : rel.slice(0, cut);
}

function copyText(task: TaskState): string {
  const recipe = {
    task_id: task.id,
    prompt: task.prompt,
    model: task.model,
    seed: task.seed,
    params: task.params
  };
  return JSON.stringify(recipe, null, 2);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'wan-nb:generations',
  description: 'Every Wan generation on the machine, live: a sidebar and a status-bar item.',
  autoStart: true,
  optional: [ILayoutRestorer, IStatusBar, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null
  ) => {
    const settings = ServerConnection.makeSettings();
    const store = new TaskStore(settings);
    const players = new WidgetTracker<MainAreaWidget<VideoPlayer>>({ namespace: 'wan-nb-player' });
    const serverRoot = PageConfig.getOption('serverRoot');
    let sidebar: GenerationsSidebar;

    const actions: IRowActions = {
      cancel: task => {
        store.cancel(task.id).then(
          error => error && sidebar.row(task.id)?.steerFailed(error),
          err => sidebar.row(task.id)?.steerFailed(String(err))
        );
      },
      steer: (task, action, options) => {
        const row = () => sidebar.row(task.id);
        store.steer(task.id, action, options).then(
          error => (error ? row()?.steerFailed(error) : action === 'move' && row()?.moved()),
          err => row()?.steerFailed(String(err))
        );
      },
      resumeRun: task => {
        const row = () => sidebar.row(task.id);
        store.resumeRun(task.id).then(
          answer => {
            if (answer.error || !answer.newId) {
              row()?.steerFailed(answer.error || 'the server named no new task');
              return;
            }
            row()?.resumed();
            sidebar.follow(answer.newId);
          },
          err => row()?.steerFailed(String(err))
        );
      },
      play: (task, scene) => {
        const url = store.videoUrl(task, scene);
        const what = scene !== undefined ? `Scene ${scene}` : task.kind === 'storyboard' ? 'Film' : '';
        const title = [what, task.prompt || task.id].filter(Boolean).join(': ');
        const file = `${task.id}${scene !== undefined ? `-scene${scene}` : ''}.mp4`;
        // A run's inputs show beside its own video (a storyboard's scenes are runs of their own).
        const withInputs = scene === undefined;
        const widget = playerWidget(url, title, file, withInputs ? task.inputs : {});
        widget.id = `wan-nb-player-${task.id}-${scene ?? 'video'}`;
        const open = players.find(w => w.id === widget.id);
        if (open) {
          widget.dispose();
          app.shell.activateById(open.id);
          return;
        }
        app.shell.add(widget, 'main');
        void players.add(widget);
        app.shell.activateById(widget.id);
        if (withInputs) {
          void store.inputsOf(task.id).then(inputs => {
            if (!widget.isDisposed) {
              widget.content.setInputs(inputs);
            }
          });
        }
      },
      copy: task => {
        Clipboard.copyToSystem(copyText(task));
        Notification.info('Copied the prompt and parameters', { autoClose: 2000 });
      },
      folderOf: task => folderUnderRoot(task.outputPath, serverRoot),
      openFolder: (_task, folder) => {
        if (app.commands.hasCommand('filebrowser:go-to-path')) {
          void app.commands.execute('filebrowser:go-to-path', { path: `/${folder}` });
        } else {
          window.open(`${PageConfig.getBaseUrl()}tree/${folder}`, '_blank');
        }
      }
    };

    const notify = new NotifySetting();
    sidebar = new GenerationsSidebar(store, actions, notify);
    const notifier = new EndNotifier(notify, taskId => {
      app.shell.activateById(SIDEBAR_ID);
      sidebar.follow(taskId);
    });
    store.ended.connect((_, task) => notifier.ended(task));
    sidebar.id = SIDEBAR_ID;
    sidebar.title.icon = wanIcon;
    sidebar.title.caption = 'Wan generations';
    app.shell.add(sidebar, 'left', { rank: 900 });
    restorer?.add(sidebar, SIDEBAR_ID);
    store.start();

    app.commands.addCommand(OPEN_COMMAND, {
      label: 'Show Wan Generations',
      execute: () => app.shell.activateById(SIDEBAR_ID)
    });
    palette?.addItem({ command: OPEN_COMMAND, category: 'Wan' });

    if (statusBar) {
      const item = new WanStatusItem(store, () => app.shell.activateById(SIDEBAR_ID));
      statusBar.registerStatusItem('wan-nb:status', {
        item,
        align: 'left',
        rank: 5,
        isActive: () => item.running > 0,
        activeStateChanged: store.changed as any
      });
    }
  }
};

export default plugin;
