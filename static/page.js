// Times: the server writes them relative ("in 9 minutes") with the exact
// UTC time on hover; here they follow the clock and the browser's time zone.
// Without JavaScript the server's words stand.
const words = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
// The same steps as the server's words (internal/handlers/notice.go).
function relative(date) {
  const s = (date - Date.now()) / 1000, a = Math.abs(s);
  if (a < 45) return "just now";
  if (a < 50 * 60) return words.format(Math.round(s / 60), "minute");
  if (a < 36 * 3600) return words.format(Math.round(s / 3600), "hour");
  return words.format(Math.round(s / 86400), "day");
}
function refresh() {
  for (const el of document.querySelectorAll("time[data-relative]")) {
    const date = new Date(el.getAttribute("datetime"));
    if (isNaN(date)) continue;
    el.textContent = relative(date);
    el.title = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }
}
refresh();
setInterval(refresh, 30000);

// Every page shows session state, and a page restored from the browser's
// back/forward cache would show the state it had when left: after signing
// out (at the provider too), Back would show a signed-in page that no longer
// is. Such a restored page asks the server again.
window.addEventListener("pageshow", (ev) => {
  if (ev.persisted) location.reload();
});
