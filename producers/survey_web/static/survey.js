// The survey form's one enhancement: a button that clears the reason for dissatisfaction.
// A chosen radio button cannot be unchosen, and the arrow keys choose every reason they pass,
// yet the question is optional. Without this script the button stays hidden and the form works
// as before (survey.css hides the button again while no reason is chosen).
"use strict";

(() => {
  const button = document.getElementById("clear-reason");
  const reasons = Array.from(document.querySelectorAll('input[name="reason"]'));
  if (button === null || reasons.length === 0) {
    return;
  }
  button.addEventListener("click", () => {
    for (const reason of reasons) {
      reason.checked = false;
    }
    // the button hides with no reason chosen: the focus goes back to the first reason, which a
    // screen reader then reads as not chosen
    reasons[0].focus();
  });
  button.hidden = false;
})();
