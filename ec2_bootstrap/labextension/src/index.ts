/**
 * jupyter-on-demand's idle stop, shown inside JupyterLab.
 *
 * A status bar item says at all times why this machine is awake or when it stops
 * ("Idle 12 min · stops 14:32", "Busy: train.ipynb", "Kept awake until 18:00"). It reads
 * GET {base_url}jupyter-on-demand/idle every `poll_seconds` of the answer (30 s at most).
 * At the answer's `warn_at` a notification says when the machine stops, with buttons that
 * POST {base_url}jupyter-on-demand/keep-awake, as the start link's keep-awake does.
 * When AWS is about to reclaim a spot machine (the answer's `spot_notice`, written by the
 * instance's spot watcher), a notification says when, once per notice.
 *
 * This polling never counts as activity, so an open tab cannot keep the machine awake:
 * the server's endpoint emits no activity event, and the idle checker ignores Jupyter's
 * `last_activity` (which every authenticated API request, this one included, moves).
 *
 * Times are shown as HH:MM (24 h) in the viewer's local time, and compared with this
 * browser's clock.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

/** The answer of GET jupyter-on-demand/idle (the fields this extension reads). */
interface IIdleStatus {
  state: 'busy' | 'idle' | 'kept-awake' | 'unknown';
  stops_at: string | null;
  warn_at: string | null;
  idle_since: string | null;
  awake_because: string[];
  kept_awake_until: string | null;
  max_keep_awake_hours: number;
  poll_seconds: number;
  spot_notice: ISpotNotice | null;
}

/** AWS's spot interruption notice, as the spot watcher saw it. */
interface ISpotNotice {
  action: string;
  time: string;
  noticed_at: string;
}

const MAX_POLL_SECONDS = 30;
const KEEP_AWAKE_HOURS = [1, 4];
const UNAVAILABLE = 'Idle stop: status unavailable';

/** "14:32": an ISO 8601 time as hours and minutes of the viewer's clock. */
function hhmm(iso: string | null): string {
  const date = new Date(iso ?? '');
  if (isNaN(date.getTime())) {
    return '?';
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** "train.ipynb" from "kernel busy: train.ipynb"; other reasons as they are, clipped. */
function shortReason(reason: string): string {
  const short = reason.replace(/^kernel (busy|starting): /, '');
  return short.length > 40 ? `${short.slice(0, 39)}…` : short;
}

/** The status bar text of one answer. */
function describe(status: IIdleStatus): string {
  switch (status.state) {
    case 'idle': {
      // Since the idle clock started, by this browser's clock (never below 0).
      const since = Date.parse(status.idle_since ?? '');
      const minutes = isNaN(since) ? 0 : Math.max(0, (Date.now() - since) / 60000);
      const idle = `Idle ${Math.floor(minutes)} min`;
      return status.stops_at ? `${idle} · stops ${hhmm(status.stops_at)}` : idle;
    }
    case 'busy':
      return `Busy: ${shortReason(status.awake_because[0] ?? 'working')}`;
    case 'kept-awake':
      return `Kept awake until ${hhmm(status.kept_awake_until)}`;
    default:
      return 'Idle stop: no verdict yet';
  }
}

/** Seconds until the next poll: the server's `poll_seconds`, within 1..30 s. */
function pollSeconds(status: IIdleStatus | null): number {
  const asked = Number(status?.poll_seconds);
  if (!Number.isFinite(asked) || asked <= 0) {
    return MAX_POLL_SECONDS;
  }
  return Math.min(Math.max(asked, 1), MAX_POLL_SECONDS);
}

function activate(app: JupyterFrontEnd, statusBar: IStatusBar | null): void {
  const settings = app.serviceManager.serverSettings;
  const url = (endpoint: string) =>
    `${settings.baseUrl}jupyter-on-demand/${endpoint}`;

  const item = new Widget();
  item.id = 'jod-idle-status';
  item.addClass('jod-idle-status');
  item.addClass('jp-StatusBar-TextItem');
  item.node.textContent = 'Idle stop: …';
  statusBar?.registerStatusItem('jupyter-on-demand:idle-status', {
    item,
    align: 'left',
    rank: -1
  });

  let timer = 0;
  let warnedFor: string | null = null; // the stops_at value already warned about
  let warning: string | null = null; // the id of the warning on screen
  let noticed: string | null = null; // the spot notice's time already shown

  async function fetchStatus(): Promise<IIdleStatus | null> {
    try {
      const response = await ServerConnection.makeRequest(url('idle'), {}, settings);
      return response.ok ? ((await response.json()) as IIdleStatus) : null;
    } catch {
      return null; // Jupyter restarting, or the network: try again at the next poll.
    }
  }

  async function refresh(): Promise<void> {
    const status = await fetchStatus();
    item.node.textContent = status ? describe(status) : UNAVAILABLE;
    item.node.title = status?.awake_because?.join('\n') ?? '';
    let delay = pollSeconds(status) * 1000;
    if (status?.spot_notice && status.spot_notice.time !== noticed) {
      noticed = status.spot_notice.time;
      Notification.warning(
        `AWS reclaims this spot machine at ${hhmm(noticed)}: your work is being saved to GitHub.`,
        { autoClose: false }
      );
    }
    if (status) {
      // A warning about a stop that no longer comes (someone worked) goes away.
      if (warning !== null && status.stops_at !== warnedFor) {
        Notification.dismiss(warning);
        warning = null;
      }
      if (status.stops_at && status.warn_at && status.stops_at !== warnedFor) {
        const untilWarning = Date.parse(status.warn_at) - Date.now();
        if (untilWarning <= 0) {
          warnedFor = status.stops_at;
          warning = warn(status.stops_at, status.max_keep_awake_hours);
        } else {
          delay = Math.min(delay, untilWarning + 100); // poll again right at warn_at
        }
      }
    }
    window.clearTimeout(timer);
    timer = window.setTimeout(() => void refresh(), delay);
  }

  function warn(stopsAt: string, maxHours: number): string {
    // Only the buttons the admin's cap (max_keep_awake_hours) allows.
    const cap = Number.isFinite(maxHours) ? maxHours : Math.max(...KEEP_AWAKE_HOURS);
    return Notification.warning(
      `This machine stops at ${hhmm(stopsAt)} because nobody is working.`,
      {
        autoClose: false,
        actions: KEEP_AWAKE_HOURS.filter(hours => hours <= cap).map(hours => ({
          label: `Keep awake ${hours} h`,
          callback: () => void keepAwake(hours)
        }))
      }
    );
  }

  async function keepAwake(hours: number): Promise<void> {
    warning = null; // clicking an action closes the notification
    try {
      const response = await ServerConnection.makeRequest(
        url('keep-awake'),
        { method: 'POST', body: JSON.stringify({ hours }) },
        settings
      );
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) {
        throw new Error(answer.message ?? `the server answered ${response.status}`);
      }
      // An explicit autoClose: JupyterLab 4.6 shows no toast for a notification without one.
      Notification.success(`Kept awake until ${hhmm(answer.kept_awake_until)}`, {
        autoClose: 10000
      });
    } catch (error) {
      Notification.error(
        `Could not keep this machine awake: ${(error as Error).message}`,
        { autoClose: false }
      );
    }
    await refresh();
  }

  // A tab in the background may poll late (browsers slow its timers): catch up on return.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      void refresh();
    }
  });
  void refresh();
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-on-demand:idle-status',
  description: 'Says when this machine stops for idleness, and keeps it awake on request.',
  autoStart: true,
  optional: [IStatusBar],
  activate
};

export default plugin;
