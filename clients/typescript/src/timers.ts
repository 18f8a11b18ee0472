// Timers for delays a user or a peer chooses: setTimeout fires at once for
// delays past 2^31-1 ms (24.8 days), so longer ones are waited for in steps.

/** The longest delay setTimeout honours. */
export const maxTimerDelay = 2 ** 31 - 1;

/** Cancels a timer made by after or at. */
export type Cancel = () => void;

/** Runs f once ms milliseconds have passed (any finite or infinite ms; Infinity never fires). */
export function after(ms: number, f: () => void): Cancel {
  return at(Date.now() + ms, f);
}

/** Runs f at when (milliseconds since the epoch). */
export function at(when: number, f: () => void): Cancel {
  let t: ReturnType<typeof setTimeout> | undefined;
  let cancelled = false;
  const arm = () => {
    if (cancelled) return;
    const d = when - Date.now();
    if (d > maxTimerDelay || Number.isNaN(d)) t = setTimeout(arm, maxTimerDelay);
    else t = setTimeout(f, Math.max(0, d));
  };
  if (when !== Infinity) arm();
  return () => {
    cancelled = true;
    if (t !== undefined) clearTimeout(t);
  };
}
