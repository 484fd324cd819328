/**
 * A task's inputs as its snapshot names them (`inputs: {name: {kind, urls}}`, served by
 * `GET wan-nb/api/tasks/{id}/inputs/{file}`), and their labels. No DOM here: the player draws.
 */

export type InputKind = 'image' | 'video' | 'images';

export interface IInput {
  kind: InputKind;
  urls: string[];
}

export type IInputs = { [name: string]: IInput };

const KINDS: ReadonlySet<string> = new Set(['image', 'video', 'images']);
const ROUTE = /\/wan-nb\/api\/tasks\/[^/]+\/inputs\/[^/]+$/;

/** The well-formed entries of a snapshot's `inputs`, in the server's order; `{}` otherwise.
 * Only same-origin paths of the inputs route are kept: a snapshot cannot point the page
 * anywhere else. */
export function parseInputs(raw: unknown): IInputs {
  const out: IInputs = {};
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    return out;
  }
  for (const [name, entry] of Object.entries(raw as { [key: string]: any })) {
    if (!entry || !KINDS.has(entry.kind) || !Array.isArray(entry.urls)) {
      continue;
    }
    const urls = entry.urls.filter((u: unknown) => typeof u === 'string' && u.startsWith('/') && !u.startsWith('//') && ROUTE.test(u));
    if (urls.length) {
      out[name] = { kind: entry.kind, urls };
    }
  }
  return out;
}

/** What the player calls an input (as wan_nb.runs.kept_inputs.label does): `video` is the source of
 * a video-to-video run and the control video of a VACE run (one with a mask or reference
 * images); `image` is the first frame, or the character of an Animate run (one with a pose). */
export function inputLabel(name: string, names: Iterable<string>): string {
  const all = new Set(names);
  if (name === 'video') {
    return all.has('mask') || all.has('reference_images') ? 'control video' : 'source video';
  }
  if (name === 'image' && all.has('pose_video')) {
    return 'character';
  }
  const known: { [name: string]: string } = {
    image: 'first frame',
    last_image: 'last frame',
    reference_images: 'reference images',
    mask: 'mask',
    pose_video: 'pose video',
    face_video: 'face video',
    background_video: 'background video'
  };
  return known[name] ?? name.replace(/_/g, ' ');
}

/** Whether two parsed inputs name the same files (a redraw is needed only when they do not). */
export function sameInputs(a: IInputs, b: IInputs): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
