"""Sentences for synthesis: grammatical templates filled from word lists written for this project.

Why not a word-frequency list or faker: both give word salad, and a recognizer trained on salad
learns no plausible word sequences. Templates keep sentences grammatical; the lists keep the
vocabulary wide (~1,500 distinct words across nouns, verbs, adjectives, names and places), and
numbers are spelled out, so every transcript is already in the token set.
"""

from __future__ import annotations

import random

from edgekd.tokens import normalize_text

NOUNS = """
apple arrow artist baby bag bakery ball band bank basket beach bear bed bell bench bicycle bird
blanket boat book bottle box boy bread bridge brother brush bucket building bus butter button
cabin cake camera candle canoe captain car card carpet castle cat chair cheese chicken child
church city clock cloud coach coat coffee coin computer cook corner cottage council country
cousin cow crowd cup curtain customer daughter desk doctor dog door dragon drawer dress driver
drum eagle engine farmer father feather fence field finger fire fish flag flower forest fork
fountain fox friend garden gate giant girl glass glove goat guitar hammer harbor hat hill horse
hospital hotel house island jacket jar judge kettle key king kitchen kite knife ladder lake lamp
lawyer leaf letter library lion map market meadow mirror monkey moon mother mountain mouse
museum nail needle neighbor nest newspaper nurse ocean office orange owl painter palace paper
parrot path pencil piano picture pillow pilot planet plate pocket poet pond potato queen rabbit
radio river road robot rock roof room rope sailor school scientist sheep shelf ship shirt shoe
shop singer sister soldier spoon stage star station stone storm stove street student sun table
teacher telephone tent theater ticket tiger tower town toy tractor train tree truck tunnel
umbrella valley village violin wagon wall wallet watch whale wheel window wizard wolf writer
yard engineer farmer's blanket chimney saddle lantern compass anchor barrel ribbon orchard
kingdom harvest bakery puzzle rocket tablet sandwich pepper carrot onion melon lemon cherry
""".split()

PLURALS = """
apples arrows artists bags balls bells bicycles birds books bottles boxes boys bridges buses
cakes candles cars cards cats chairs children cities clocks clouds coins cows cups desks doctors
dogs doors eggs engines farmers feathers fields fingers fish flags flowers forks friends gardens
gates girls gloves goats hats hills horses houses islands jars keys kites lamps leaves letters
lions maps mirrors monkeys mountains nails neighbors nests nurses oranges owls papers pencils
pictures plates potatoes rabbits rivers roads rocks rooms ships shoes shops sisters soldiers
spoons stars stones streets students tables teachers tents tickets tigers towers toys trains
trees trucks villages wagons walls wheels windows wolves workers children's stories songs
""".split()

ADJECTIVES = """
ancient angry big bitter black blue bold brave bright broken brown busy calm careful cheap clean
clever cold cool crowded curious damp dark deep dirty dry dusty eager early empty famous fancy
fast fierce flat fresh friendly frozen full gentle giant golden good gray great green happy hard
heavy high hollow honest hot huge hungry icy kind large late lazy light little lonely long loud
lovely low lucky magic modern narrow neat new nice noisy odd old orange pale perfect pink plain
polite poor proud purple quick quiet rare red rich rough round rusty sad safe salty sharp shiny
short shy silent silver simple slow small smooth soft sour spicy square steep sticky strange
strong sweet tall tame thick thin tidy tiny tired tough ugly warm weak wet white wide wild windy
wise wooden yellow young
""".split()

VERBS_PAST = """
built bought brought carried caught chased cleaned climbed closed cooked counted covered crossed
described discovered drew dropped fixed followed found gave grabbed guarded held helped hid hit
hugged kept kicked knew lifted liked loved made mended moved noticed opened painted passed picked
planted pulled pushed raised reached read repaired saved saw sent shared showed sold sorted
stole studied taught tied took touched visited wanted warmed washed watched wrapped wrote
""".split()

VERBS_BASE = """
bake borrow bring build buy carry catch check clean climb close collect cook count cover cross
cut draw drive drop explain feed fill find fix follow get guard help hide hold keep leave lift
look at love make meet mend move open order paint pass pick plant play pull push reach read
remember repair save see sell send share show sing sort study take teach tell touch visit wash
watch wrap write
""".split()

VERBS_ING = """
baking building carrying chasing cleaning climbing cooking crossing dancing drawing driving
eating fishing fixing flying following gardening hiding jumping laughing learning listening
painting planting playing reading resting riding running sailing shouting singing skating
sleeping smiling sorting studying swimming talking teaching thinking travelling walking
waiting washing watching whistling working writing
""".split()

ADVERBS = """
quickly slowly quietly loudly carefully gently happily sadly suddenly finally always never often
rarely early late again together alone outside inside upstairs downstairs nearby today tomorrow
yesterday tonight soon already almost nearly easily badly calmly bravely politely proudly
""".split()

NAMES = """
Adam Alice Amelia Anna Arthur Ben Bella Carlos Charlie Chloe Daniel David Diana Edward Elena
Emily Emma Ethan Felix Fiona Frank George Grace Hannah Harry Helen Henry Isaac Ivan Jack James
Jane Julia Kate Leo Liam Lily Lucy Maria Mark Martin Mary Max Mia Nina Noah Oliver Olivia Oscar
Paul Peter Rachel Robert Rose Ruby Sam Sara Sophie Thomas Tom Victor Walter William Zoe
""".split()

PLACES = """
the station|the market|the harbor|the library|the museum|the park|the beach|the old mill|
the village square|the city center|the hospital|the school yard|the train platform|the farm|
the bakery|the river bank|the top of the hill|the edge of the forest|the post office|
the bus stop|the kitchen|the garden shed|the big hall|the airport|the zoo|the bridge|the lake shore
""".replace("\n", "").split("|")

TIMES = """
in the morning|at night|on monday|on friday evening|after lunch|before dinner|last summer|
next winter|every sunday|at noon|in the spring|during the storm|after the rain|at dawn|
at sunset|on the weekend|in december|in june|before breakfast|after school|late at night
""".replace("\n", "").split("|")

HARVARD = """
The birch canoe slid on the smooth planks.
Glue the sheet to the dark blue background.
It's easy to tell the depth of a well.
These days a chicken leg is a rare dish.
Rice is often served in round bowls.
The juice of lemons makes fine punch.
The box was thrown beside the parked truck.
The hogs were fed chopped corn and garbage.
Four hours of steady work faced us.
A large size in stockings is hard to sell.
The boy was there when the sun rose.
A rod is used to catch pink salmon.
The source of the huge river is the clear spring.
Kick the ball straight and follow through.
Help the woman get back to her feet.
A pot of tea helps to pass the evening.
Smoky fires lack flame and heat.
The soft cushion broke the man's fall.
The salt breeze came across from the sea.
The girl at the booth sold fifty bonds.
The small pup gnawed a hole in the sock.
The fish twisted and turned on the bent hook.
Press the pants and sew a button on the vest.
The swan dive was far short of perfect.
The beauty of the view stunned the young boy.
Two blue fish swam in the tank.
Her purse was full of useless trash.
The colt reared and threw the tall rider.
It snowed, rained, and hailed the same morning.
Read verse out loud for pleasure.
Hoist the load to your left shoulder.
Take the winding path to reach the lake.
Note closely the size of the gas tank.
Wipe the grease off his dirty face.
Mend the coat before you go out.
The wrist was badly strained and hung limp.
The stray cat gave birth to kittens.
The young girl gave no clear response.
The meal was cooked before the bell rang.
What joy there is in living.
A king ruled the state in the early days.
The ship was torn apart on the sharp reef.
Sickness kept him home the third week.
The wide road shimmered in the hot sun.
The lazy cow lay in the cool grass.
Lift the square stone over the fence.
The rope will bind the seven books at once.
Hop over the fence and plunge in.
The friendly gang left the drug store.
Mesh wire keeps chicks inside.
""".strip().splitlines()

NUMBERS = "two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty".split() + ["a hundred"]

TEMPLATES = [
    "{Name} {verb_past} the {adj} {noun} {time}.",
    "The {adj} {noun} {verb_past} {a_adj} {noun2} near {place}.",
    "{Name} and {Name2} were {verb_ing} at {place} {time}.",
    "Why did the {noun} {verb_base} the {adj} {noun2}?",
    "Please {verb_base} the {noun} before {Name} comes back.",
    "There were {number} {adj} {plural} in {place}.",
    "{Name} said that the {noun} was too {adj} to {verb_base}.",
    "We {adverb} {verb_past} {number} {plural} at {place}.",
    "The {noun} in {place} is {adj} and {adj2}.",
    "If you {verb_base} the {noun}, {Name} will {verb_base2} the {plural}.",
    "My {noun} {adverb} {verb_past} the {adj} {plural}.",
    "Do you remember the {adj} {noun} we saw {time}?",
    "{Name} was {verb_ing} {adverb} while the {plural} were {verb_ing2}.",
    "The {plural} are {adj} but the {noun} is {adj2}.",
    "Could you {verb_base} {number} {plural} for the {noun}?",
    "I think the {adj} {noun} {verb_past} my {noun2} {time}.",
    "{Name} never {verb_past} a {noun} so {adj} before.",
    "After the {noun} {verb_past} the {noun2}, everyone went to {place}.",
    "{harvard}",
    "{harvard}",
]


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def make_sentence(rng: random.Random) -> str:
    """One grammatical English sentence (display form: capitals, punctuation)."""
    t = rng.choice(TEMPLATES)
    adj2 = rng.choice(ADJECTIVES)
    fill = {
        "Name": rng.choice(NAMES), "Name2": rng.choice(NAMES), "noun": rng.choice(NOUNS),
        "noun2": rng.choice(NOUNS), "plural": rng.choice(PLURALS), "adj": rng.choice(ADJECTIVES),
        "adj2": adj2, "a_adj": _article(adj2), "verb_past": rng.choice(VERBS_PAST),
        "verb_base": rng.choice(VERBS_BASE), "verb_base2": rng.choice(VERBS_BASE),
        "verb_ing": rng.choice(VERBS_ING), "verb_ing2": rng.choice(VERBS_ING),
        "adverb": rng.choice(ADVERBS), "place": rng.choice(PLACES).strip(),
        "time": rng.choice(TIMES).strip(), "number": rng.choice(NUMBERS), "harvard": rng.choice(HARVARD),
    }
    s = t.format(**fill)
    return s[0].upper() + s[1:]


def make_transcript(rng: random.Random) -> tuple[str, str]:
    """(text to speak, normalised transcript in the token set)."""
    s = make_sentence(rng)
    return s, normalize_text(s)


def vocabulary() -> set[str]:
    words = set()
    for lst in (NOUNS, PLURALS, ADJECTIVES, VERBS_PAST, VERBS_BASE, VERBS_ING, ADVERBS, NAMES, NUMBERS):
        words.update(normalize_text(" ".join(lst)).split())
    for s in HARVARD + PLACES + TIMES:
        words.update(normalize_text(s).split())
    return words
