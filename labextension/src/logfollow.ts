/**
 * Terminal-like logs in cell outputs. A `.podmagic-log` box is laid out
 * bottom-up (`flex-direction: column-reverse`, set by the kernel side), so
 * the browser keeps it at its newest line by itself. Here: once the user
 * scrolls up, the box holds that place while lines arrive and shows a
 * "newest" button that goes back to the end (and following resumes).
 */

const LOG = '.podmagic-log';
const SLACK_PX = 8;

/** In a column-reverse box, scrollTop is 0 at the end and negative above it. */
function scrolledUp(el: HTMLElement): boolean {
  return -el.scrollTop > SLACK_PX;
}

/** Listen for scrolls on log boxes anywhere in `root`; returns a function that stops it. */
export function installLogFollow(root: Document = document): () => void {
  const fromTop = new WeakMap<HTMLElement, number>();
  const watched = new WeakSet<HTMLElement>();

  const hold = (el: HTMLElement): void => {
    const top = fromTop.get(el);
    if (top !== undefined) {
      el.scrollTop = top - (el.scrollHeight - el.clientHeight);
    }
  };

  const watch = (el: HTMLElement): void => {
    if (watched.has(el)) {
      return;
    }
    watched.add(el);
    new MutationObserver(() => hold(el)).observe(el, { childList: true, subtree: true, characterData: true });
  };

  const button = (el: HTMLElement): HTMLButtonElement => {
    let end = el.querySelector(':scope > button.pm-log-end') as HTMLButtonElement | null;
    if (!end) {
      end = document.createElement('button');
      end.className = 'pm-log-end jp-Button';
      end.textContent = '↓ newest';
      end.title = 'Back to the newest line (and keep following)';
      end.addEventListener('click', () => {
        fromTop.delete(el);
        el.scrollTop = 0;
        el.classList.remove('pm-scrolled-up');
      });
      el.prepend(end); // first child = bottom of a column-reverse box
    }
    return end;
  };

  const onScroll = (event: Event): void => {
    const el = event.target;
    if (!(el instanceof HTMLElement) || !el.matches(LOG)) {
      return;
    }
    const up = scrolledUp(el);
    el.classList.toggle('pm-scrolled-up', up);
    if (up) {
      button(el);
      fromTop.set(el, el.scrollHeight - el.clientHeight + el.scrollTop);
      watch(el);
    } else {
      fromTop.delete(el);
    }
  };

  root.addEventListener('scroll', onScroll, true);
  return () => root.removeEventListener('scroll', onScroll, true);
}
