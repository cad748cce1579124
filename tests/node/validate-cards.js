// Checks Adaptive Cards with Microsoft's own library: `node validate-cards.js FILE`,
// FILE holding a JSON array of cards. Prints every problem (unknown or invalid
// elements while parsing, then property validation) and exits 1 if there is any.
"use strict";
const fs = require("fs");
const AC = require("adaptivecards/dist/adaptivecards.js");

const cards = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const problems = [];
cards.forEach((json, i) => {
  const card = new AC.AdaptiveCard();
  const context = new AC.SerializationContext();
  card.parse(json, context);
  for (let k = 0; k < context.eventCount; k++) {
    problems.push(`card ${i}: ${context.getEventAt(k).message}`);
  }
  for (const e of card.validateProperties().validationEvents) {
    problems.push(`card ${i}: ${e.message}`);
  }
});
if (problems.length > 0) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`${cards.length} card(s) valid`);
