"""Sentences for the synthetic speech dataset, written for this project.

Each sentence takes about 1.5-4 seconds to speak at eSpeak's normal rate, so one to three of
them fill a clip. Together they cover bilabials (p, b, m), labiodentals (f, v), rounded and
spread vowels and the other mouth shapes that the viseme table distinguishes.

Japanese sentences are in kana only: eSpeak NG 1.52 has no Japanese kanji readings and spells
a kanji out as "Chinese letter" in English.
"""

ENGLISH_SENTENCES: tuple[str, ...] = (
    "Please pass me the blue paper by the window.",
    "We often visit the old fishing village in the valley.",
    "My brother bought five bright yellow balloons.",
    "The morning ferry leaves at half past seven.",
    "She measured the flour and poured it into a bowl.",
    "Could you open the door for the moving van?",
    "A cool breeze moved through the tall pine trees.",
    "The museum shows maps from many faraway places.",
    "Thank you for waiting, the room is ready now.",
    "Bubbles floated above the warm bath water.",
    "Mom made a huge pot of vegetable soup.",
    "Every Thursday they play music in the park.",
    "Which way is the quickest route to the harbor?",
    "The puppy chewed a shoe and hid under the bed.",
    "We should check the weather before the hike.",
    "Pour the fresh orange juice into the glasses.",
    "His voice was soft but very clear.",
    "Rain fell on the roof all through the night.",
    "I would love a warm cup of coffee, please.",
    "The boat moved slowly over the smooth water.",
    "Five violins played the theme again.",
    "Maybe we can meet by the bakery at noon.",
    "Bob put a blueberry muffin on my plate.",
    "Look at the moon above the quiet beach.",
    "The old farmer fixed the fence with wire.",
    "Whose jacket is hanging by the front door?",
    "Our team won the final match on Sunday.",
    "The children laughed at the funny puppet show.",
    "Keep the window open when the oven is on.",
    "Few people knew about the hidden pool.",
    "The train was full, so we took the bus.",
    "Measure twice and cut once, my father says.",
    "Owls hoot softly in the woods at night.",
    "A bumblebee buzzed around the purple flowers.",
    "Push the button and wait for the beep.",
    "The photo shows a smiling woman by a fountain.",
)

JAPANESE_SENTENCES: tuple[str, ...] = (
    "おはようございます、きょうも いい てんきですね。",
    "すみません、えきは どちらですか。",
    "あした ともだちと うみに いきます。",
    "この りんごは とても あまくて おいしいです。",
    "まいにち あさ ごはんを たべます。",
    "ねこが まどの そばで ねています。",
    "わたしは みずを いっぱい のみたいです。",
    "やまの うえから まちが よく みえます。",
    "あめが ふって きたので かさを さしました。",
    "こどもたちは こうえんで あそんで います。",
    "おちゃを もう いっぱい いかがですか。",
    "でんしゃは じゅうじに しゅっぱつします。",
    "ふゆは さむいので てぶくろを します。",
    "はなびを みに かわらへ いきましょう。",
    "ありがとう、とても たすかりました。",
    "この ほんは むかしの おはなしです。",
    "ゆっくり はなして ください。",
    "ぼくの いぬは しろくて ちいさいです。",
    "みんなで いっしょに うたを うたいましょう。",
    "おなかが すいたので ぱんを かいました。",
    "きのう ひさしぶりに そぼに あいました。",
    "まどを あけて ください、へやが あついです。",
    "コーヒーと ケーキを おねがいします。",
    "テレビの ニュースを みましたか。",
)
