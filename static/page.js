// Every page shows session state, and a page restored from the browser's
// back/forward cache would show the state it had when left: after signing
// out (at the provider too), Back would show a signed-in page that no longer
// is. Such a restored page asks the server again.
window.addEventListener("pageshow", (ev) => {
  if (ev.persisted) location.reload();
});
