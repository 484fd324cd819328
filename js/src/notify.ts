/**
 * "Tell me when it ends": a browser notification when a run or storyboard of this server ends
 * (finished, failed, lost) while the page is hidden, so a 40-minute render can run in a background
 * tab. The sidebar's checkbox turns it off; the choice is kept in this browser (localStorage),
 * like the Lab's other per-browser view state.
 */

import { endNotice, IEndedTask } from './notices';

const SETTING_KEY = 'wan-nb:notify-when-done';

/** The on/off setting, on by default, kept per browser. */
export class NotifySetting {
  get enabled(): boolean {
    try {
      return window.localStorage.getItem(SETTING_KEY) !== 'off';
    } catch {
      return true; // storage blocked (private mode): the default
    }
  }

  set enabled(on: boolean) {
    try {
      window.localStorage.setItem(SETTING_KEY, on ? 'on' : 'off');
    } catch {
      // kept for this page only
    }
  }

  /** The checkbox for the sidebar; turning it on asks for the browser's permission (a click may). */
  checkbox(): HTMLLabelElement {
    const label = document.createElement('label');
    label.className = 'wan-nb-Notify';
    label.title = 'Show a browser notification when a run ends while this page is in the background';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.className = 'wan-nb-Notify-toggle';
    box.checked = this.enabled;
    box.addEventListener('change', () => {
      this.enabled = box.checked;
      if (box.checked) {
        void askPermission();
      }
    });
    label.append(box, document.createTextNode(' Notify when runs end'));
    return label;
  }
}

function supported(): boolean {
  return typeof window !== 'undefined' && 'Notification' in window;
}

async function askPermission(): Promise<boolean> {
  if (!supported()) {
    return false;
  }
  if (Notification.permission === 'default') {
    try {
      await Notification.requestPermission();
    } catch {
      return false;
    }
  }
  return Notification.permission === 'granted';
}

/** Shows the notice of each task that ends (the store calls `ended`); a click brings the tab back. */
export class EndNotifier {
  constructor(
    private readonly _setting: NotifySetting,
    private readonly _onClick: (taskId: string) => void
  ) {}

  ended(task: IEndedTask): void {
    const notice = endNotice(task, document.hidden, this._setting.enabled);
    if (!notice || !supported() || Notification.permission === 'denied') {
      return;
    }
    void askPermission().then(granted => {
      if (!granted) {
        return;
      }
      try {
        const shown = new Notification(notice.title, { body: notice.body, tag: notice.tag });
        shown.onclick = () => {
          window.focus();
          this._onClick(task.id);
          shown.close();
        };
      } catch (err) {
        console.debug('wan_nb: cannot show a notification', err); // e.g. Android: service workers only
      }
    });
  }
}
