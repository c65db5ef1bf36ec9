/* jobhooks dashboard: progressive enhancement only; every page reads without it.
   - <time datetime> elements show the viewer's local time (UTC stays on hover);
   - [data-refresh] regions reload themselves from the server every few seconds;
   - [data-refresh-page] sections reload the page while runs are still open. */
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit"
  });

  function localise(root) {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var moment = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(moment.getTime())) {
        times[i].textContent = format.format(moment);
      }
    }
  }

  function refresh(region) {
    var every = (parseInt(region.getAttribute("data-every"), 10) || 10) * 1000;
    var url = region.getAttribute("data-refresh");
    window.setInterval(function () {
      if (document.hidden || region.contains(document.activeElement)) {
        return;
      }
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (response.redirected || !response.ok) {
            window.location.reload();
            return null;
          }
          return response.text();
        })
        .then(function (html) {
          if (html !== null) {
            region.innerHTML = html;
            localise(region);
          }
        })
        .catch(function () { /* offline for a moment: try again at the next tick */ });
    }, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    localise(document);
    var regions = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < regions.length; i++) {
      refresh(regions[i]);
    }
    var live = document.querySelector("[data-refresh-page]");
    if (live) {
      var seconds = parseInt(live.getAttribute("data-refresh-page"), 10) || 5;
      window.setTimeout(function () {
        if (!document.hidden) {
          window.location.reload();
        }
      }, seconds * 1000);
    }
  });
})();
